//! End-to-end tests: the demo backends and the BFFs run in-process on ephemeral ports, and every
//! test talks real HTTP (and, through the BFFs, gRPC) to them. One test binary keeps links few.

#![allow(clippy::unwrap_used)]

mod config;
mod gateway;
mod mobile;
mod partner;
mod schemas;
mod support;
mod web;
