//! A guest's stdout or stderr when many guests share the container's: whole lines only.
//!
//! An HTTP service runs one guest instance per request, many at a time, all writing to the
//! container's stdout and stderr (containerd's log pipes: what `ctr` prints and the CRI log
//! file). Written straight through, two requests' output would interleave inside lines. A
//! [`LineOutput`] keeps each instance's partial line to itself and writes only complete
//! lines, each with one `write_all` under the process's stdout (stderr) lock, so lines from
//! different requests interleave only as whole lines. A line longer than [`MAX_LINE`] is
//! cut there (the rest continues on the next line), so a guest that never writes a newline
//! cannot make the runner hold its output without bound. What is left when the instance's
//! last stream is dropped is written as a line of its own.

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line kept back waiting for its newline.
pub const MAX_LINE: usize = 16 * 1024;

/// Which of the container's streams lines go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
}

impl Target {
    fn write_line(self, line: &[u8]) {
        // Output the container cannot take (a closed pipe) is dropped: the guest must not
        // fail because nobody reads its logs.
        let _ = match self {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line).and_then(|()| out.flush())
            }
            Target::Stderr => std::io::stderr().lock().write_all(line),
        };
    }
}

/// One guest instance's stdout or stderr; clones share the partial line.
#[derive(Clone)]
pub struct LineOutput(Arc<Mutex<Lines>>);

struct Lines {
    target: Target,
    pending: Vec<u8>,
    /// Where complete lines go: the container's stream, or a test's buffer.
    sink: Sink,
}

enum Sink {
    Target,
    #[cfg(test)]
    Buffer(Arc<Mutex<Vec<Vec<u8>>>>),
}

impl LineOutput {
    pub fn new(target: Target) -> Self {
        LineOutput(Arc::new(Mutex::new(Lines {
            target,
            pending: Vec::new(),
            sink: Sink::Target,
        })))
    }

    #[cfg(test)]
    fn buffered(lines: Arc<Mutex<Vec<Vec<u8>>>>) -> Self {
        LineOutput(Arc::new(Mutex::new(Lines {
            target: Target::Stdout,
            pending: Vec::new(),
            sink: Sink::Buffer(lines),
        })))
    }

    fn write(&self, bytes: &[u8]) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(bytes);
        }
    }
}

impl Lines {
    fn emit(&self, line: &[u8]) {
        match &self.sink {
            Sink::Target => self.target.write_line(line),
            #[cfg(test)]
            Sink::Buffer(b) => b.lock().unwrap().push(line.to_vec()),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) if self.pending.len() + i < MAX_LINE => {
                    let (line, rest) = bytes.split_at(i + 1);
                    if self.pending.is_empty() {
                        self.emit(line);
                    } else {
                        self.pending.extend_from_slice(line);
                        let whole = std::mem::take(&mut self.pending);
                        self.emit(&whole);
                    }
                    bytes = rest;
                }
                _ => {
                    let room = MAX_LINE - self.pending.len();
                    let take = room.min(bytes.len());
                    self.pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.pending.len() >= MAX_LINE {
                        self.flush_partial();
                    }
                }
            }
        }
    }

    /// Writes what is pending as a line of its own.
    fn flush_partial(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut line = std::mem::take(&mut self.pending);
        line.push(b'\n');
        self.emit(&line);
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

impl IsTerminal for LineOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// What one `write` may carry (wasmtime-wasi's stdio budget).
const WRITE_BUDGET: usize = 64 * 1024;

impl OutputStream for LineOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        LineOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // A flush does not end a line: the partial line waits for its newline (or the end of
        // the instance), so that concurrent requests never split each other's lines.
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        LineOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(writes: &[&[u8]]) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        {
            let out = LineOutput::buffered(lines.clone());
            for w in writes {
                out.write(w);
            }
        }
        let got = lines.lock().unwrap().clone();
        got.into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn only_whole_lines_are_written() {
        assert_eq!(
            collect(&[b"he", b"llo\nwor", b"ld\n", b"a\nb\n"]),
            ["hello\n", "world\n", "a\n", "b\n"]
        );
    }

    #[test]
    fn what_is_left_at_the_end_is_a_line_of_its_own() {
        assert_eq!(collect(&[b"one\ntwo"]), ["one\n", "two\n"]);
        assert!(collect(&[]).is_empty());
    }

    #[test]
    fn a_line_without_end_is_cut_at_the_bound() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let got = collect(&[&long]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].len(), MAX_LINE + 1);
        assert_eq!(got[1].len(), MAX_LINE + 1);
        assert_eq!(got[2].len(), 11);
        assert!(got.iter().all(|l| l.ends_with('\n')));
    }

    #[test]
    fn a_newline_past_the_bound_still_cuts_at_the_bound() {
        let mut bytes = vec![b'y'; MAX_LINE + 5];
        bytes.push(b'\n');
        let got = collect(&[&bytes]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE + 1);
        assert_eq!(got[1], "yyyyy\n");
    }
}
