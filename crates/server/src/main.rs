//! The `switchyard` binary: parse the command line, run it, report errors in one line.

use clap::Parser;
use server::cli::{Cli, run};

fn main() {
    // A missing `.env` is normal; a malformed one is reported.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("error: could not read .env: {err}");
        std::process::exit(2);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(cli)) {
        // `{:#}` prints the whole context chain on one line, never a backtrace.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
