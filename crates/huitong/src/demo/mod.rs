//! `huitong demo`: a three-department exchange on one machine, and a walk through real
//! exchanges between them.
//!
//! The adapters and the broker are the real servers, each on its own loopback port, loaded from
//! the same config files that `--init` writes for running them as separate processes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use huitong_adapter::AdapterConfig;
use huitong_broker::BrokerConfig;
use huitong_tls::ServerTls;
use tokio::sync::watch;

mod catalogue;
pub mod data;
mod scenario;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the exchange running after the walkthrough and print how to query it.
    #[arg(long)]
    serve: bool,
    /// Write the demo exchange (records, adapter and broker configs) to DIR and exit, to run each
    /// part as its own process.
    #[arg(long, value_name = "DIR", conflicts_with = "serve")]
    init: Option<PathBuf>,
    /// Run the walkthrough in DIR instead of a temporary directory, and keep DIR afterwards, to
    /// look at what each part stored (the broker's data directory is DIR/broker-data).
    #[arg(long, value_name = "DIR", conflicts_with = "init")]
    dir: Option<PathBuf>,
    /// Residents in the synthetic household register (at least 500).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(500..=1_000_000))]
    persons: u32,
    /// With --init: the broker's port; the adapters get the next three. For a second exchange
    /// on one machine.
    #[arg(long, default_value_t = catalogue::BROKER_PORT, requires = "init",
          value_parser = clap::value_parser!(u16).range(1..=65532))]
    port_base: u16,
    /// Seed of the synthetic records; the same seed gives the same records.
    #[arg(long, default_value_t = 20_261_126)]
    seed: u64,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let data = data::generate(
        args.seed,
        data::DemoSize {
            persons: args.persons as usize,
        },
    );

    if let Some(dir) = &args.init {
        let written = catalogue::write_exchange(dir, &data, args.port_base)?;
        println!(
            "Wrote the demo exchange to {}. Run each part in its own terminal:",
            dir.display()
        );
        for (_, cfg) in &written.adapter_configs {
            println!("  huitong adapter --config {}", cfg.display());
        }
        println!(
            "  huitong broker --config {}",
            written.broker_config.display()
        );
        println!(
            "  export HUITONG_CA={0}/ca.pem HUITONG_CERT={0}/civil-affairs-consumer.pem HUITONG_BROKER=https://127.0.0.1:{1}",
            dir.join(catalogue::PKI_DIR).display(),
            args.port_base
        );
        println!(
            "  huitong query --broker https://127.0.0.1:{} public-security/household-register --key id_number={} --fields name,birth_date --purpose \"{}\"",
            args.port_base,
            data.eligible_couple().0.id_number,
            scenario::MARRIAGE_PURPOSE,
        );
        println!(
            "  export HUITONG_DISPLAY_ZONE={}   # audit times in the exchange's own zone",
            scenario::DISPLAY_ZONE
        );
        return Ok(ExitCode::SUCCESS);
    }

    let (dir, keep) = match &args.dir {
        Some(d) => (d.clone(), true),
        None => (
            std::env::temp_dir().join(format!("huitong-demo-{}", std::process::id())),
            false,
        ),
    };
    let written = catalogue::write_exchange(&dir, &data, catalogue::BROKER_PORT)?;
    let result = run_exchange(&args, &data, &written, started).await;
    if keep {
        println!("The exchange's files are kept in {}.", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_exchange(
    args: &Args,
    data: &data::DemoData,
    written: &catalogue::Written,
    started: std::time::Instant,
) -> anyhow::Result<ExitCode> {
    let (stop_tx, _) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    println!(
        "Huitong demo: {} residents, {} marriages, {} business licences (seed {})",
        data.persons.len(),
        data.marriages.len(),
        data.businesses.len(),
        args.seed
    );
    let mut tasks = Vec::new();
    let mut adapters = Vec::new();
    for (dept, path) in &written.adapter_configs {
        let config = AdapterConfig::load(path)?;
        // The same sources as `huitong adapter`: files are watched, so a change made to one
        // (the death scene does) reaches subscribers.
        let source =
            huitong_sources::load(&config).with_context(|| format!("loading {dept}'s records"))?;
        let tls = ServerTls::load(config.tls_files())?;
        let listener = huitong_proto::transport::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let title = catalogue::DEPARTMENTS
            .iter()
            .find(|d| d.0 == dept.as_str())
            .map_or("", |d| d.1);
        println!("  adapter {dept:<18} {title:<44} https://{addr}");
        adapters.push((dept.clone(), format!("https://{addr}")));
        let dept = dept.clone();
        let options = config.serve_options();
        let stop = stopped(stop_tx.subscribe());
        tasks.push(tokio::spawn(async move {
            huitong_adapter::serve(dept.clone(), source, listener, options, tls, stop)
                .await
                .with_context(|| format!("adapter {dept}"))
        }));
    }
    // The broker runs from the config `--init` writes, on the ports chosen above.
    let mut broker_config = BrokerConfig::load(&written.broker_config)?;
    broker_config.listen = "127.0.0.1:0".parse()?;
    for a in &mut broker_config.adapters {
        if let Some((_, endpoint)) = adapters.iter().find(|(d, _)| *d == a.dept) {
            a.endpoint.clone_from(endpoint);
        }
    }
    let listener = huitong_proto::transport::bind(broker_config.listen)?;
    let broker_addr = listener.local_addr()?;
    println!("  broker  https://{broker_addr}");
    let stop = stopped(stop_tx.subscribe());
    tasks.push(tokio::spawn(async move {
        huitong_broker::serve(broker_config, listener, stop)
            .await
            .context("broker")
    }));

    let broker_url = format!("https://{broker_addr}");
    let pki = written.dir.join(catalogue::PKI_DIR);
    let mut client = huitong_client::Client::connect(
        &broker_url,
        &scenario::identity(&pki, "civil-affairs", huitong_tls::Role::Consumer)?,
    )
    .await?;
    let catalogue = client.catalogue(None).await?;
    println!(
        "  catalogue: {} resources from {} departments, ready after {} ms",
        catalogue.len(),
        written.adapter_configs.len(),
        started.elapsed().as_millis()
    );

    let register = written.dir.join(crate::demo::data::HOUSEHOLD_REGISTER_FILE);
    let outcome = scenario::run(&broker_url, &pki, &register, data).await;
    println!(
        "\n{} exchanges: {} answered, {} refused as policy requires, {} surprises.",
        outcome.answered + outcome.refused + outcome.surprises.len(),
        outcome.answered,
        outcome.refused,
        outcome.surprises.len()
    );
    for s in &outcome.surprises {
        println!("  surprise: {s}");
    }

    if args.serve {
        let stop = crate::serve::shutdown_signal();
        let who = |dept: &str, role: &str| {
            let cert = pki.join(format!("{dept}-{role}.pem"));
            format!(
                "--ca {} --cert {}",
                pki.join("ca.pem").display(),
                cert.display()
            )
        };
        println!("\nThe exchange keeps running. Try, in another terminal:");
        println!(
            "  huitong catalogue --broker {broker_url} {}",
            who("civil-affairs", "consumer")
        );
        println!(
            "  huitong query --broker {broker_url} {} public-security/household-register --key id_number={} --fields name,birth_date,marital_status,address --purpose \"婚姻登记 marriage registration\"",
            who("civil-affairs", "consumer"),
            data.eligible_couple().0.id_number
        );
        println!(
            "  huitong query --broker {broker_url} {} market-regulation/business-licences --filter status=revoked --fields credit_code,name --purpose \"credit check\" --page-size 5",
            who("taxation", "consumer")
        );
        println!(
            "  huitong admin --broker {broker_url} {} grants",
            who("public-security", "admin")
        );
        println!(
            "  huitong audit entries --zone {} --broker {broker_url} {} --limit 5",
            scenario::DISPLAY_ZONE,
            who(catalogue::AUDITOR, "auditor")
        );
        println!("Press Ctrl-C to stop.");
        stop.await;
    }

    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.context("a demo server panicked")??;
    }
    Ok(if outcome.surprises.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
