//! `--replicas 1,3`: how many replicas one Redis carries. For each count, that many BFF replicas
//! share one Redis (limits decided there, as production runs them), the closed loop is spread
//! evenly over them (what a round-robin load balancer does), and the run reports requests/s, the
//! replicas' CPU per request, and what each request cost the Redis: round trips (counted by the
//! replicas themselves, `bff_redis_round_trips_total`; Redis's own command count also includes
//! what its scripts run) and Redis CPU. One Redis core divided
//! by the Redis CPU per request is the request rate one Redis carries, whatever the replicas'
//! count; the replicas' CPU per request says how many cores that rate needs at the BFFs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::Options;
use crate::load::{self, LoadResult};
use crate::report::{Target, append_text, check, machine, print, start_target, wait_ready};
use crate::scenario::RequestSpec;

/// What Redis says of itself that matters here: commands processed and CPU spent.
#[derive(Debug, Clone, Copy)]
struct RedisCounters {
    commands: u64,
    cpu: Duration,
}

async fn counters(connection: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<RedisCounters> {
    let info: String = redis::cmd("INFO").arg("all").query_async(connection).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .with_context(|| format!("no {name} in INFO"))
    };
    let commands = field("total_commands_processed")?.parse()?;
    let cpu = field("used_cpu_user")?.parse::<f64>()? + field("used_cpu_sys")?.parse::<f64>()?;
    Ok(RedisCounters { commands, cpu: Duration::from_secs_f64(cpu) })
}

struct Row {
    replicas: usize,
    load: LoadResult,
    bff_cpu: Duration,
    round_trips: f64,
    redis_commands: f64,
    redis_cpu: Duration,
}

impl Row {
    fn per_request(&self, value: f64) -> f64 {
        value / self.load.ok.max(1) as f64
    }
}

pub fn run(options: &Options, counts: &[usize], spec: RequestSpec, bff_args: &[String]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = redis::Client::open(options.redis.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await.with_context(|| {
            format!(
                "--replicas needs a Redis at {} (--redis URL); start one with \
                 `redis-server --daemonize yes --port 6379 --save '' --appendonly no`",
                options.redis
            )
        })?;
        let http = reqwest::Client::new();
        let mut rows = Vec::new();
        let mut spec = Arc::new(spec);
        for &count in counts {
            let mut args = bff_args.to_vec();
            args.extend(["--redis".to_owned(), options.redis.clone()]);
            let replicas: Vec<Target> =
                (0..count).map(|_| start_target("BFF", args.clone())).collect::<anyhow::Result<_>>()?;
            for replica in &replicas {
                wait_ready(&http, replica).await?;
                let answer = check(replica, &spec).await?;
                // Every replica must give the first one's answer, and every later answer too.
                match &spec.reference {
                    None => spec = Arc::new(RequestSpec { reference: Some(answer), ..(*spec).clone() }),
                    Some(reference) if *reference != answer => {
                        anyhow::bail!("replicas answer differently:\n {reference}\n {answer}")
                    }
                    Some(_) => {}
                }
            }
            let warm_up = (options.duration / 5).min(Duration::from_secs(3));
            spread(&replicas, &spec, options.concurrency, warm_up).await?;
            let cpu_before: Duration = replicas.iter().map(|r| r.child.cpu()).sum::<anyhow::Result<_>>()?;
            let trips_before = round_trips(&http, &replicas).await?;
            let redis_before = counters(&mut connection).await?;
            let load = spread(&replicas, &spec, options.concurrency, options.duration).await?;
            let redis_after = counters(&mut connection).await?;
            let trips_after = round_trips(&http, &replicas).await?;
            let cpu_after: Duration = replicas.iter().map(|r| r.child.cpu()).sum::<anyhow::Result<_>>()?;
            rows.push(Row {
                replicas: count,
                load,
                bff_cpu: cpu_after.saturating_sub(cpu_before),
                round_trips: trips_after.saturating_sub(trips_before) as f64,
                // Less the INFO that read the counters.
                redis_commands: redis_after.commands.saturating_sub(redis_before.commands + 1) as f64,
                redis_cpu: redis_after.cpu.saturating_sub(redis_before.cpu),
            });
        }
        let text = render(options, &rows);
        print(&text);
        append_text(options, "replicas", &text)
    })
}

/// Round trips to Redis the replicas made so far, from their own `bff_redis_round_trips_total`.
async fn round_trips(http: &reqwest::Client, replicas: &[Target]) -> anyhow::Result<u64> {
    let mut total = 0;
    for replica in replicas {
        let text = http.get(format!("http://{}/__bench/metrics", replica.addr)).send().await?.text().await?;
        for line in text.lines().filter(|line| line.starts_with("bff_redis_round_trips_total{")) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            total += value.parse::<f64>().with_context(|| format!("odd metrics line `{line}`"))? as u64;
        }
    }
    Ok(total)
}

/// The closed loop over `replicas`, `connections` spread evenly, for `duration`.
async fn spread(
    replicas: &[Target],
    spec: &Arc<RequestSpec>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let each = connections.div_ceil(replicas.len()).max(1);
    let loads = futures::future::join_all(
        replicas.iter().map(|replica| load::closed(replica.addr, Arc::clone(spec), each, duration)),
    )
    .await;
    let mut total = LoadResult::new();
    for load in loads {
        total.merge(load?);
    }
    total.elapsed = duration;
    Ok(total)
}

fn render(options: &Options, rows: &[Row]) -> String {
    let mut text = format!(
        "\nbff-bench replicas: scenario {}, {} per count, {} connections spread over the replicas, one Redis ({}), {}\n\n",
        options.scenario.name(),
        humantime::format_duration(options.duration),
        options.concurrency,
        options.redis,
        machine()
    );
    text.push_str(
        "replicas  requests/s  errors  wrong  BFF CPU ms/req  round trips/req  Redis cmds/req  Redis CPU µs/req  req/s one Redis core carries\n",
    );
    for row in rows {
        let redis_us = row.per_request(row.redis_cpu.as_secs_f64() * 1e6);
        text.push_str(&format!(
            "{:>8}  {:>10.0}  {:>6}  {:>5}  {:>14.3}  {:>15.2}  {:>14.2}  {:>16.1}  {:>28.0}\n",
            row.replicas,
            row.load.requests_per_second(),
            row.load.errors,
            row.load.wrong,
            row.per_request(row.bff_cpu.as_secs_f64() * 1e3),
            row.per_request(row.round_trips),
            row.per_request(row.redis_commands),
            redis_us,
            1e6 / redis_us.max(1e-9),
        ));
    }
    if let [first, .., last] = rows {
        text.push_str(&format!(
            "\n{} replicas against {}: throughput ratio {:.2}; Redis round trips per request {:.2} against {:.2}\n\
             (Redis commands include those its scripts run: a limit decision is one round trip, one script)\n",
            last.replicas,
            first.replicas,
            last.load.requests_per_second() / first.load.requests_per_second().max(1e-9),
            last.per_request(last.round_trips),
            first.per_request(first.round_trips),
        ));
    }
    text
}
