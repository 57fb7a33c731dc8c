//! `huitong audit stats` and `huitong audit alerts`: summaries of a period of the exchange log
//! (auditor certificate). The rules are `huitong_audit::stats` and `huitong_audit::alerts`;
//! this only pages the entries through them and prints the result.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use huitong_audit::alerts::{AlertScan, Thresholds};
use huitong_audit::record::format_micros;
use huitong_audit::stats::Summary;
use huitong_client::Audit;
use huitong_proto::v1::ExchangeRecord;

use crate::audit::{Conn, Filter, all_entries};
use crate::zone::{TimeArg, Zone};

/// Entries held in memory at once while a period is read.
const CHUNK: u32 = 10_000;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Summarise a period (auditor): who exchanged with whom and how it ended, refusals by
    /// reason, not-found rates, distinct people per consumer, latency percentiles.
    Stats {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        period: Period,
        /// Only this consumer department.
        #[arg(long)]
        consumer: Option<String>,
        /// One JSON object.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV in long form: one number per row (table, its keys, metric, value).
        #[arg(long)]
        csv: bool,
    },
    /// Consumers whose queries named more distinct people, or were refused more often, in a
    /// sliding hour than a threshold: the bulk-lookup pattern (auditor).
    #[command(group(
        clap::ArgGroup::new("threshold")
            .required(true)
            .multiple(true)
            .args(["subjects_per_hour", "refusals_per_hour"])
    ))]
    Alerts {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        period: Period,
        /// Only this consumer department.
        #[arg(long)]
        consumer: Option<String>,
        /// Flag a consumer whose queries named more than this many distinct people in an hour.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        subjects_per_hour: Option<u64>,
        /// Flag a consumer more than this many of whose queries were refused in an hour.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        refusals_per_hour: Option<u64>,
        /// One JSON object.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV, one row per alert.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct Period {
    /// From this time on: a date (midnight in the display zone) or an RFC 3339 time with any
    /// offset.
    #[arg(long, value_parser = TimeArg::parse)]
    since: Option<TimeArg>,
    /// Before this time, in the same forms as --since.
    #[arg(long, value_parser = TimeArg::parse)]
    until: Option<TimeArg>,
}

/// A period as instants, once the display zone is known.
#[derive(Debug, Clone, Copy)]
struct Span {
    since: Option<i64>,
    until: Option<i64>,
}

impl Period {
    fn span(&self, zone: &Zone) -> anyhow::Result<Span> {
        Ok(Span {
            since: self
                .since
                .map(|t| t.micros(zone))
                .transpose()
                .context("--since")?,
            until: self
                .until
                .map(|t| t.micros(zone))
                .transpose()
                .context("--until")?,
        })
    }
}

impl Span {
    fn describe(&self, zone: &Zone) -> String {
        let t = |v: Option<i64>, none: &str| v.map_or(none.to_owned(), |us| zone.seconds(us));
        format!(
            "Period: {} to {}\n",
            t(self.since, "the start of the log"),
            t(self.until, "now")
        )
    }
}

pub async fn run(command: Command, zone: &Zone) -> anyhow::Result<ExitCode> {
    let out = match command {
        Command::Stats {
            conn,
            period,
            consumer,
            json,
            csv,
        } => {
            let period = period.span(zone)?;
            let mut summary = Summary::new();
            each_record(&mut conn.audit().await?, &period, zone, consumer, |r| {
                summary.add(r)
            })
            .await?;
            let report = summary.report();
            if json {
                let mut v = report.to_json();
                v["since"] = period.since.map(format_micros).into();
                v["until"] = period.until.map(format_micros).into();
                format!("{}\n", serde_json::to_string_pretty(&v)?)
            } else if csv {
                report.to_csv()
            } else {
                format!("{}{}", period.describe(zone), report.to_text())
            }
        }
        Command::Alerts {
            conn,
            period,
            consumer,
            subjects_per_hour,
            refusals_per_hour,
            json,
            csv,
        } => {
            let period = period.span(zone)?;
            let mut scan = AlertScan::new(Thresholds {
                subjects_per_hour,
                refusals_per_hour,
            });
            each_record(&mut conn.audit().await?, &period, zone, consumer, |r| {
                scan.add(r)
            })
            .await?;
            let report = scan.report();
            if json {
                let mut v = report.to_json();
                v["since"] = period.since.map(format_micros).into();
                v["until"] = period.until.map(format_micros).into();
                format!("{}\n", serde_json::to_string_pretty(&v)?)
            } else if csv {
                report.to_csv()
            } else {
                format!(
                    "{}(The hour slides by the minute; it starts empty at the start of the period.)\n{}",
                    period.describe(zone),
                    report.to_text()
                )
            }
        }
    };
    // A reader that stops early (`| head`) ends the output, not the command with a panic.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing to standard output")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Feeds every entry of the period to `f`, in log order, holding at most [`CHUNK`] at once.
async fn each_record(
    audit: &mut Audit,
    period: &Span,
    zone: &Zone,
    consumer: Option<String>,
    mut f: impl FnMut(&ExchangeRecord),
) -> anyhow::Result<()> {
    let mut start = 0;
    loop {
        let filter = Filter::period(start, period.since, period.until, consumer.clone(), CHUNK);
        let (chunk, _) = all_entries(audit, &filter, zone).await?;
        for e in &chunk {
            if let Some(r) = &e.record {
                f(r);
            }
        }
        match chunk.last() {
            Some(last) if chunk.len() >= CHUNK as usize => start = last.index + 1,
            _ => return Ok(()),
        }
    }
}
