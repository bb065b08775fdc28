//! Route handlers, one module per subsystem. Handlers are thin: extract, call one domain
//! function, convert the result to a wire DTO.

pub mod api_keys;
pub mod auth;
pub mod chatkit;
pub mod health;
pub mod mcp;
pub mod mcp_endpoint;
pub mod models;
pub mod runs;
pub mod settings;
pub mod storage;
pub mod tools;
pub mod users;
pub mod vector_stores;
pub mod widgets;
pub mod workflows;
