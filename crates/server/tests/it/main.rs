//! The server's integration suite: the real router and binary, on SQLite and PostgreSQL.

mod access;
mod auth;
mod blobs;
mod chatkit;
mod chatkit_conformance;
mod cli;
mod http;
mod kinds;
mod knowledge;
mod lifecycle;
mod mcp;
mod models;
mod plans;
mod runs;
mod runs_more;
mod storage;
mod tools;
mod users;
mod workflows;
