use std::process::ExitCode;

use clap::Parser as _;
use collabkit::cli::{self, Cli, Command};
use collabkit::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config_file().as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("collabkit: configuration error: {error:#}");
            return ExitCode::from(2);
        }
    };
    collabkit::telemetry::init(&config.log);
    match cli::run(cli.command.unwrap_or(Command::Serve), config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "collabkit failed");
            eprintln!("collabkit: {error:#}");
            ExitCode::FAILURE
        }
    }
}
