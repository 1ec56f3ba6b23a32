//! The `folddb` binary: one executable for the server (`folddb serve`), the log tooling and
//! the benchmarks (and, as later issues land, the SQL client). It builds the tokio runtime; the
//! libraries never do.

mod auth;
mod bench;
mod client;
mod config;
mod consume;
mod guard;
mod http;
mod live;
mod log_cmd;
mod metrics;
mod replay_files;
mod server;
mod server_logs;
mod shell;
mod subscribe;
mod tail;
mod ws;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the C library's allocator: a request allocates and frees hundreds of
/// small objects across the runtime's threads, and glibc's allocator took a fifth of the
/// server's CPU under 64-client single-row INSERTs (`folddb bench sql --scenarios insert`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "folddb",
    version,
    about = "FoldDB: a realtime SQL database built on a durable log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, verify and dump a log directory (read-only).
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// Measure performance.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the server (single node; data in ./data unless configured).
    Serve(config::ServeArgs),
    /// The SQL shell: interactive (history, completion, \d, \watch), or for scripts with
    /// -c, -f or a pipe.
    Sql(shell::SqlArgs),
    /// Watch a live query: print every message of a subscription as one JSON line.
    Subscribe(subscribe::SubscribeArgs),
    /// Follow the committed row changes: print each change record as one JSON line.
    Tail(tail::TailArgs),
    /// Consume a topic partition (for a consumer group): print each message as one JSON
    /// line, acknowledging what was printed.
    Consume(consume::ConsumeArgs),
}

/// Stack of the server's threads. Statements are bounded in depth before they are parsed
/// (`folddb_query::nesting`); this is the margin for planning what the bound admits, in a
/// debug build too. Only the pages a thread touches are ever committed.
const SERVER_THREAD_STACK_BYTES: usize = 16 << 20;

fn serve(
    args: config::ServeArgs,
    logs: std::sync::Arc<server_logs::LogRing>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(SERVER_THREAD_STACK_BYTES)
        .build()?;
    runtime.block_on(server::serve(args, logs))?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // What reaches stderr also reaches `system.server_logs` (the last lines of it).
    let logs = server_logs::LogRing::new(server_logs::KEPT_LINES);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("FOLDDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(logs.layer())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Log(cmd) => log_cmd::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Serve(args) => serve(args, logs),
        Command::Sql(args) => shell::run(args),
        Command::Subscribe(args) => subscribe::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Consume(args) => consume::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
