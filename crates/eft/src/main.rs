//! The `eft` command line: train and evaluate efficient transformers.
//!
//! Arguments become a validated [`eft_train::RunConfig`] before anything runs; library errors
//! are reported as one line and a non-zero exit code.

mod arena;
mod args;
mod attn;
mod commands;
mod context;
mod device;
mod exits;
mod export;
mod fetch;
mod interrupt;
mod memory;
mod plot;
mod pretrain;
mod profile;
mod ranks;
mod report;
mod search;

use std::process::ExitCode;

use clap::Parser;

/// Counts heap bytes so runs and profiles can report the peak of a step (see `eft_meter`).
#[global_allocator]
static ALLOCATOR: eft_meter::TrackingAllocator = eft_meter::TrackingAllocator;

fn main() -> ExitCode {
    let _ = eft_meter::reuse_freed_memory();
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = ranks::start() {
        report_error(&e);
        return ExitCode::from(2);
    }
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            let code = commands::exit_code(&e);
            ranks::abort_others(code);
            ExitCode::from(code)
        }
    };
    ranks::finish();
    code
}

/// The error as one line in one write, so that the lines of several ranks sharing a terminal
/// do not interleave.
fn report_error(e: &anyhow::Error) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("error: {e:#}\n").as_bytes());
}
