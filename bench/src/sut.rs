//! The system under test: a child process with piped stdio speaking newline-delimited
//! JSON-RPC, and its memory figures from `/proc`.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context};

pub struct Sut {
    child: Child,
    pub input: BufWriter<ChildStdin>,
    pub output: BufReader<ChildStdout>,
    line: String,
}

impl Sut {
    pub fn spawn(command: &[String]) -> anyhow::Result<Self> {
        let (program, args) = command.split_first().context("no command given")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        let input = BufWriter::with_capacity(1 << 16, child.stdin.take().context("stdin")?);
        let output = BufReader::with_capacity(1 << 16, child.stdout.take().context("stdout")?);
        Ok(Self {
            child,
            input,
            output,
            line: String::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.input.write_all(line.as_bytes())?;
        self.input.write_all(b"\n")?;
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.input.flush()?;
        Ok(())
    }

    /// Reads one line; fails on EOF.
    pub fn recv(&mut self) -> anyhow::Result<&str> {
        self.line.clear();
        if self.output.read_line(&mut self.line)? == 0 {
            bail!("the system under test closed its stdout");
        }
        Ok(self.line.trim_end())
    }

    /// Reads lines until a response (not a notification) arrives.
    pub fn recv_response(&mut self) -> anyhow::Result<&str> {
        loop {
            self.line.clear();
            if self.output.read_line(&mut self.line)? == 0 {
                bail!("the system under test closed its stdout");
            }
            if self.line.contains("\"id\"") && !self.line.contains("\"method\"") {
                return Ok(self.line.trim_end());
            }
        }
    }

    /// `(VmRSS, VmHWM)` in KiB.
    pub fn memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// Closes stdin and waits for the process to exit.
    pub fn finish(mut self) -> anyhow::Result<()> {
        drop(self.input);
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the system under test exited with {status}");
        }
        Ok(())
    }
}
