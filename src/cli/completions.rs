//! `mcp-router completions SHELL` and `mcp-router man`: the shell completion script and the
//! man page, generated from the same command definition the parser uses (`clap_complete`,
//! `clap_mangen`), so they never drift from the real flags. Writes to stdout only; a reader
//! that stops early (`| head`) is not an error.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mcp-router", &mut script);
    emit(&script)
}

/// Prints the man page (roff), `mcp-router(1)`.
pub fn man() -> anyhow::Result<i32> {
    let cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    emit(&page)
}

fn emit(bytes: &[u8]) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}
