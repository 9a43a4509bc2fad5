use std::process::ExitCode;

use clap::Parser as _;
use collabkit::cli::{self, Cli, Command};
use collabkit::config::Config;

fn main() -> ExitCode {
    // A workflow worker (started by this server's pool) reads no configuration, environment
    // or command line of the server's, and runs no async runtime.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(collabkit::workflows::protocol::WORKER_ARG) {
        return collabkit::workflows::worker::main(args.next().as_deref());
    }
    serve()
}

#[tokio::main]
async fn serve() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config_file().as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("collabkit: configuration error: {error:#}");
            return ExitCode::from(2);
        }
    };
    collabkit::telemetry::init(&config.log, &config.traces);
    match cli::run(cli.command.unwrap_or(Command::Serve), config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "collabkit failed");
            eprintln!("collabkit: {error:#}");
            ExitCode::FAILURE
        }
    }
}
