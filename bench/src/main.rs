//! `loadgen`: the benchmark harness's MCP client. It spawns the system under test (a
//! command with piped stdio), drives it through the scenarios and prints one JSON line per
//! scenario; `loadgen report` turns many such lines into a table of medians.
//!
//! Blocking std I/O on purpose: one request at a time must cost the client as little as
//! possible, so the figures are the system under test's, not an async runtime's.

mod http;
mod report;
mod scenarios;
mod stdio;
mod transport;
mod ws;

use std::io::Write;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "MCP load generator for mcp-router benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scenarios against COMMAND (spawned with piped stdio).
    Run(scenarios::RunArgs),
    /// Read JSON lines from stdin; print medians per label/scenario as a markdown table.
    Report(report::ReportArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let lines = scenarios::run(&args)?;
            let mut out = std::io::stdout().lock();
            for line in lines {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        Command::Report(args) => report::run(&args),
    }
}
