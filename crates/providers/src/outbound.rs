//! Defined tools' outbound HTTP (`domain::tools::OutboundHttp`): every address a call
//! reaches is checked (the first and each redirect's), the connection goes to the very
//! address that was checked (no second DNS answer), private networks are refused unless
//! the tool allows them, and time and size are bounded.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use domain::tools::{HttpAnswer, HttpCall, OutboundError, OutboundHttp};
use futures_util::StreamExt;
use reqwest::{Method, Url, header};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 3;

/// Sends tools' requests; cheap to share.
#[derive(Default)]
pub struct Outbound;

impl Outbound {
    pub fn new() -> Outbound {
        Outbound
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// shared (CGNAT), multicast, reserved or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x64 && v6.segments()[1] == 0xff9b))
        }
    }
}

fn remaining(deadline: Instant) -> Result<Duration, OutboundError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or(OutboundError::Timeout)
}

/// The addresses of `url`'s host, each checked.
async fn addresses(
    url: &Url,
    allow_private: bool,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let host = url
        .host_str()
        .ok_or_else(|| OutboundError::Invalid("the URL has no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| OutboundError::Invalid("the URL has no port".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(remaining(deadline)?, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| OutboundError::Timeout)?
            .map_err(|err| OutboundError::Unreachable(format!("{host}: {err}")))?
            .collect(),
    };
    if found.is_empty() {
        return Err(OutboundError::Unreachable(format!("{host} has no address")));
    }
    if !allow_private && let Some(bad) = found.iter().find(|a| !is_public(a.ip())) {
        return Err(OutboundError::Forbidden(bad.ip().to_string()));
    }
    Ok(found)
}

#[async_trait]
impl OutboundHttp for Outbound {
    async fn send(&self, call: HttpCall) -> Result<HttpAnswer, OutboundError> {
        let deadline = Instant::now() + call.timeout;
        let mut url = Url::parse(&call.url)
            .map_err(|err| OutboundError::Invalid(format!("not a URL: {err}")))?;
        let origin = url.origin();
        let mut method = Method::from_bytes(call.method.as_bytes())
            .map_err(|_| OutboundError::Invalid("not an HTTP method".into()))?;
        let mut body = call.body.clone();
        for _ in 0..=MAX_REDIRECTS {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(OutboundError::Invalid(
                    "only http and https are allowed".into(),
                ));
            }
            let found = addresses(&url, call.allow_private_network, deadline).await?;
            let host = url.host_str().unwrap_or_default().to_string();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .resolve_to_addrs(&host, &found)
                .no_proxy()
                .build()
                .map_err(|err| OutboundError::Invalid(err.to_string()))?;
            let same_origin = url.origin() == origin;
            let mut request = client
                .request(method.clone(), url.clone())
                .timeout(remaining(deadline)?);
            for (name, value) in &call.headers {
                // Secrets stay with the origin they were configured for.
                if !same_origin
                    && call
                        .secret_headers
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(name))
                {
                    continue;
                }
                request = request.header(name.as_str(), value.as_str());
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|err| {
                if err.is_timeout() {
                    OutboundError::Timeout
                } else {
                    OutboundError::Unreachable(err.to_string())
                }
            })?;
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
            {
                url = url
                    .join(location)
                    .map_err(|err| OutboundError::Invalid(format!("bad redirect: {err}")))?;
                if status.as_u16() == 303
                    || (matches!(status.as_u16(), 301 | 302) && method == Method::POST)
                {
                    method = Method::GET;
                    body = None;
                }
                continue;
            }
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut out = Vec::new();
            let mut truncated = false;
            let mut stream = response.bytes_stream();
            loop {
                let next = tokio::time::timeout(remaining(deadline)?, stream.next())
                    .await
                    .map_err(|_| OutboundError::Timeout)?;
                let Some(chunk) = next else { break };
                let chunk = chunk.map_err(|err| OutboundError::Unreachable(err.to_string()))?;
                let room = call.max_bytes.saturating_sub(out.len());
                if chunk.len() > room {
                    out.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                out.extend_from_slice(&chunk);
            }
            return Ok(HttpAnswer {
                status: status.as_u16(),
                content_type,
                body: out,
                truncated,
            });
        }
        Err(OutboundError::TooManyRedirects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
