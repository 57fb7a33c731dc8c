//! Results on stdout, ending quietly when the reader has gone.
//!
//! `println!` panics when stdout is a pipe whose reader exited (`huitong audit entries --json |
//! head -1`): Rust ignores SIGPIPE, so the write fails with EPIPE. Commands print through
//! [`outln!`] instead, which turns that one failure into [`Closed`]; `main` ends quietly on it,
//! as `cat` or `rg` do. Every other write error (a full disk under `> file`) stays an error.

use std::fmt;
use std::io::{self, Write};

/// Stdout was closed by its reader: nobody wants the rest, so the command stops quietly.
#[derive(Debug)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for Closed {}

/// Writes `args` to stdout as is.
pub fn write(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args).map_err(|e| match e.kind() {
        io::ErrorKind::BrokenPipe => anyhow::Error::new(Closed),
        _ => anyhow::Error::new(e).context("writing to stdout"),
    })
}

/// Whether `e` (or anything it wraps) is [`Closed`].
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Closed>())
}

/// `println!` that returns [`Closed`] or the write error instead of panicking; use with `?`.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` counterpart of [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
