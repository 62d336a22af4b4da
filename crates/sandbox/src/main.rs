//! Runs the 4me sandbox as a standalone server.

use std::net::SocketAddr;

use app_builder_sandbox::Sandbox;
use clap::Parser;

/// A strict local emulator of 4me (OAuth, GraphQL, REST, async results, webhooks).
#[derive(Parser, Debug)]
#[command(name = "sandbox", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_LISTEN", default_value = "127.0.0.1:4444")]
    listen: SocketAddr,

    /// Create the provider account "wdc" with an OAuth application and a service instance
    /// "Mainframe 1", and print the credentials.
    #[arg(long)]
    seed: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let sandbox = Sandbox::start_on(args.listen).await?;
    println!("4me sandbox listening on {}", sandbox.url());
    println!("  OAuth:   {}", sandbox.oauth_url());
    println!("  GraphQL: {}", sandbox.graphql_url());
    println!("  REST:    {}", sandbox.rest_url());
    println!("  domain:  {}", sandbox.domain());
    if args.seed {
        let creds = sandbox.add_oauth_application("wdc");
        let service_instance = sandbox.seed_service_instance("wdc", "Mainframe 1");
        println!("Seeded provider account \"wdc\":");
        println!("  client_id:     {}", creds.client_id);
        println!("  client_secret: {}", creds.client_secret);
        println!("  service instance \"Mainframe 1\": {service_instance}");
    }
    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    drop(sandbox);
    Ok(())
}
