//! End-to-end tests: the demo backends and the BFFs run in-process on ephemeral ports, and every
//! test talks real HTTP (and, through the BFFs, gRPC) to them. One test binary keeps links few.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod attacks;
mod browser;
mod config;
mod contract;
mod deployment;
mod gateway;
mod inbound;
mod limits;
mod metrics;
mod mobile;
mod outbound;
mod partner;
mod readme;
mod resilience;
mod schemas;
mod support;
mod surfaces;
mod tls;
mod traces;
mod versions;
mod web;
