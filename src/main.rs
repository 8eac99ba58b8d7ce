//! `mcp-router`: parse the command line and hand over to [`mcp_router::cli`].

use clap::Parser;

fn main() {
    let cli = mcp_router::cli::Cli::parse();
    let code = match mcp_router::cli::main(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mcp-router: {err:#}");
            1
        }
    };
    std::process::exit(code);
}
