//! A system under test reached over stdio: a child process with piped stdio speaking
//! newline-delimited JSON-RPC, pipelined (many requests may be written before replies are
//! read).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{self, Child, ChildStdin, ChildStdout, Command};

use anyhow::{bail, Context};

use crate::transport::{pipeline, Make, Stream, Transport};

pub struct Stdio {
    child: Child,
    pub input: BufWriter<ChildStdin>,
    pub output: BufReader<ChildStdout>,
    line: String,
}

impl Stdio {
    pub fn spawn(command: &[String]) -> anyhow::Result<Self> {
        let (program, args) = command.split_first().context("no command given")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(process::Stdio::piped())
            .stdout(process::Stdio::piped())
            .stderr(process::Stdio::null())
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

impl Transport for Stdio {
    fn pid(&self) -> Option<u32> {
        Some(self.pid())
    }

    fn call(&mut self, line: &str) -> anyhow::Result<String> {
        self.send(line)?;
        self.flush()?;
        Ok(self.recv_response()?.to_owned())
    }

    fn notify(&mut self, line: &str) -> anyhow::Result<()> {
        self.send(line)?;
        self.flush()
    }

    fn pipeline(
        &mut self,
        make: &Make,
        first_id: u64,
        window: usize,
        total: usize,
    ) -> anyhow::Result<usize> {
        pipeline(self, make, first_id, window, total)
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        Stdio::finish(*self)
    }
}

impl Stream for Stdio {
    fn write(&mut self, line: String) -> anyhow::Result<()> {
        self.send(&line)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Stdio::flush(self)
    }

    fn read_response(&mut self) -> anyhow::Result<String> {
        Ok(self.recv_response()?.to_owned())
    }
}
