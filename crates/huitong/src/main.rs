//! The huitong command: demo, broker, adapter, query and the other subcommands.

mod demo;

fn main() {}
