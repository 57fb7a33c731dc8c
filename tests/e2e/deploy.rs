//! The deployment files under `deploy/` against the real `huitong` binary and against each
//! other, so that they cannot drift from the code or contradict one another:
//!
//! - every example config passes `huitong config check`;
//! - every `huitong …` invocation in the systemd units, the Kubernetes manifests and the
//!   documented commands names real subcommands and flags (read from `--help`);
//! - ports agree: configs' `listen`, container ports, Services, probe addresses, the
//!   NetworkPolicy, the Dockerfile's EXPOSE and the broker's adapter endpoints;
//! - paths agree: every file a config or probe names is mounted at that path (Kubernetes) or
//!   readable under the unit's sandbox (systemd), and the broker's data directory is on its
//!   persistent volume and is the unit's only writable path;
//! - the example exchange runs as deployed: certificates made by the documented `huitong pki`
//!   commands, processes started with the manifests' commands, the manifests' probes answered,
//!   and every grant in the policy file usable;
//! - metrics are reachable only where they should be: loopback in the example configs (hosts),
//!   rebound to the pod's address by the documented ConfigMap commands, named `metrics` in
//!   containers and Services, and admitted by the NetworkPolicy from the monitoring namespace
//!   only;
//! - stops are clean: units are `Type=notify` with a watchdog and a stop timeout above the
//!   server's `shutdown_grace_seconds`, pods have a `preStop` pause and a termination grace
//!   period above pause plus grace.
//!
//! The docs are held to the binary too (docs/*.md, README.md, deploy/README.md):
//!
//! - every `huitong …` command line (in fenced code blocks, `$ huitong …` in output blocks, and
//!   inline code spans) parses: it is run with `--help` appended, so clap checks subcommands,
//!   flags and values and nothing runs. Placeholders (`<dir>`, `FILE`, `…`) may be refused as
//!   values; `[--optional]` brackets and `a|b` alternatives are read as usage. A command whose
//!   next line in its block starts with `error:` documents a refusal: it must fail with that
//!   message;
//! - every fenced ```toml block passes `huitong config check` (written into a fresh demo
//!   directory, so that its relative certificate paths resolve) unless the line before its
//!   fence is `<!-- fragment -->`: the mark for blocks that show some keys of a larger file
//!   (an adapter's `[resources.source]`, the broker's `[alerts]`), which no check can judge
//!   alone. Policy-file blocks are whole files and are checked. A fenced block whose line
//!   before its fence is `<!-- file: NAME -->` is a file such a config names (a CSV file, a
//!   secret): it is written as NAME into that directory first;
//! - every documented `HUITONG_…=value` works: a variable of the whole command is set on a real
//!   `huitong config check`; one of a subcommand is set on that subcommand, which must get past
//!   reading it (clap reads the environment before it reports missing arguments); the test
//!   harness's own variables must be read by the tests.
//!
//! `serde_yaml` is not a dependency, so the manifests are read by the small YAML-subset parser
//! below (block mappings and sequences, one-line flow lists, quoted scalars, `|` blocks). The
//! TOML configs are read line by line for the few keys needed; `huitong config check` is what
//! checks them properly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use huitong_tests::{Proc, TempDir, huitong_bin, workspace_root};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Installed as on a host, with the certificates the docs make, so that `config check` can
/// find every file a config names, as start-up must; the policy file is checked too.
#[test]
fn every_example_config_passes_config_check() {
    let d = Deploy::load();
    assert!(d.broker.is_some(), "deploy/examples has no broker config");
    assert_eq!(
        d.adapters.len(),
        3,
        "deploy/examples should hold one adapter config per department"
    );
    let tmp = TempDir::new("deploy-check");
    install_examples(&d, tmp.path(), true);
    let etc = tmp.path().join("etc/huitong");
    let policy = d.broker.as_ref().unwrap().get("broker", "policy");
    let files = d
        .configs()
        .map(|c| c.name())
        .chain([file_name(&policy).to_owned()]);
    for name in files {
        let path = etc.join(&name);
        let out = clean_command()
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "huitong config check {} (deploy/examples/{name}, installed) failed:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_huitong_invocation_uses_real_subcommands_and_flags() {
    let d = Deploy::load();
    let mut cli = Cli::default();
    let mut problems = Vec::new();
    let mut seen = 0;

    // What actually runs: unit ExecStart/ExecReload lines and the manifests' command lists.
    // These must also give every flag the subcommand requires.
    for unit in &d.units {
        for key in [
            "ExecStartPre",
            "ExecStart",
            "ExecStartPost",
            "ExecReload",
            "ExecStop",
        ] {
            for line in unit.all(key) {
                let argv = exec_argv(line);
                if is_huitong(&argv[0]) {
                    seen += 1;
                    cli.check(
                        &argv[1..],
                        true,
                        &format!("{} {key}", unit.name),
                        &mut problems,
                    );
                }
            }
        }
    }
    for w in &d.workloads {
        for c in &w.containers {
            for (what, argv) in c.invocations() {
                assert!(!argv.is_empty(), "{}: empty {what}", w.origin());
                if is_huitong(&argv[0]) {
                    seen += 1;
                    cli.check(
                        &argv[1..],
                        true,
                        &format!("{} {what}", w.origin()),
                        &mut problems,
                    );
                } else {
                    problems.push(format!(
                        "{} {what}: runs {:?}, expected /usr/local/bin/huitong",
                        w.origin(),
                        argv[0]
                    ));
                }
            }
            // A probe must ask the right kind of server, or it fails on the identity check:
            // `--adapter URL` for an adapter, `--broker URL` for the broker.
            for (what, argv) in &c.probes {
                let other = if w.role.as_str() == "adapter" {
                    "--broker"
                } else {
                    "--adapter"
                };
                if flag(argv, &format!("--{}", w.role)).is_none() || flag(argv, other).is_some() {
                    problems.push(format!(
                        "{} {what}: the probe should name the server with --{}",
                        w.origin(),
                        w.role
                    ));
                }
            }
        }
    }
    // Two units; the broker's command and three probes; each adapter's command and two probes.
    assert!(
        seen >= 2 + 4 + 3 * 3,
        "found only {seen} invocations; is the parsing broken?"
    );

    // What is documented for people to type: `huitong …` lines in comments and in the README's
    // code blocks. Flags may come from the environment there, so only names are checked.
    let documented = documented_commands();
    assert!(
        documented.len() >= 8,
        "found only {} documented commands",
        documented.len()
    );
    for (origin, argv) in &documented {
        if argv.first().is_some_and(|a| a == "huitong") {
            cli.check(&argv[1..], false, origin, &mut problems);
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn ports_agree_across_configs_manifests_network_policy_and_dockerfile() {
    let d = Deploy::load();
    let broker = d.broker.as_ref().unwrap();
    let mut problems = Vec::new();

    let mut all_ports: BTreeSet<u16> = BTreeSet::new();
    let adapter_ports: BTreeSet<u16> = d.adapters.iter().map(|a| a.listen_port()).collect();
    for cfg in d.configs() {
        let w = d.workload_running(cfg);
        let listen = cfg.listen_port();
        let mut want: BTreeSet<u16> = [listen].into();
        if let Some(m) = cfg.metrics_port() {
            want.insert(m);
            // Named, so that Services, ServiceMonitors and rules can say `metrics`.
            if w.containers[0].ports.get("metrics") != Some(&m) {
                problems.push(format!(
                    "{}: no container port named metrics = {m}",
                    w.origin()
                ));
            }
            if !d
                .services_selecting(w)
                .iter()
                .any(|s| s.ports.iter().any(|p| p.name == "metrics" && p.port == m))
            {
                problems.push(format!(
                    "{}: no Service in front of it has a port named metrics = {m}",
                    w.origin()
                ));
            }
            if w.annotations.get("prometheus.io/port").is_none() {
                problems.push(format!(
                    "{}: no prometheus.io/port annotation for its metrics",
                    w.origin()
                ));
            }
            // The scrape annotation, if any, must point at the metrics port.
            if let Some(p) = w.annotations.get("prometheus.io/port")
                && p.as_str() != Some(m.to_string().as_str())
            {
                problems.push(format!("{}: prometheus.io/port {p} is not {m}", w.origin()));
            }
        }
        all_ports.extend(&want);
        let container = &w.containers[0];
        let got: BTreeSet<u16> = container.ports.values().copied().collect();
        if got != want {
            problems.push(format!(
                "{}: containerPorts {got:?}, but {} listens on {want:?}",
                w.origin(),
                cfg.name()
            ));
        }
        // Probes dial the listen port on loopback, which the certificate names.
        for (what, argv) in &container.probes {
            let addr = flag(argv, "--adapter")
                .or_else(|| flag(argv, "--broker"))
                .unwrap_or("https://127.0.0.1:7400");
            let (host, port) = host_port(addr);
            if port != listen {
                problems.push(format!(
                    "{} {what}: it dials {addr}, but {} listens on {listen}",
                    w.origin(),
                    cfg.name()
                ));
            }
            if host != "127.0.0.1" {
                problems.push(format!(
                    "{} {what}: it dials {addr}; it should dial 127.0.0.1",
                    w.origin()
                ));
            }
        }
        // Every Service in front of the pods forwards a port to the same port number, so that
        // the DNS name with the listen port (as in broker.toml) reaches the process.
        let services = d.services_selecting(w);
        if services.is_empty() {
            problems.push(format!("{}: no Service selects its pods", w.origin()));
        }
        for s in services {
            for p in &s.ports {
                let target = match p.target.parse::<u16>() {
                    Ok(n) => Some(n),
                    Err(_) => container.ports.get(&p.target).copied(),
                };
                if target != Some(p.port) || !want.contains(&p.port) {
                    problems.push(format!(
                        "{}: Service {} port {} -> {} does not match the container's {want:?}",
                        w.origin(),
                        s.name,
                        p.port,
                        p.target
                    ));
                }
            }
        }
    }

    // The broker dials each adapter on the port that adapter listens on.
    for a in &d.adapters {
        let dept = a.dept();
        match broker.endpoint_of(&dept) {
            None => problems.push(format!("broker.toml has no [[adapters]] entry for {dept}")),
            Some(e) if host_port(&e).1 != a.listen_port() => problems.push(format!(
                "broker.toml dials {dept} at {e}, but {} listens on {}",
                a.name(),
                a.listen_port()
            )),
            Some(_) => {}
        }
    }

    // NetworkPolicy: adapters admit exactly their listen ports, and only from the broker; the
    // broker may leave towards the adapters on exactly those ports; consumers reach the broker.
    let broker_pods = &d.workload_running(broker).pod_labels;
    let adapter_pods: Vec<&Map<String, Value>> = d
        .adapters
        .iter()
        .map(|a| &d.workload_running(a).pod_labels)
        .collect();
    assert!(
        d.policies
            .iter()
            .any(|p| p.selector.is_empty() && p.types.len() == 2 && p.rules.is_empty()),
        "networkpolicy.yaml should start from a default-deny policy for the namespace"
    );
    let mut admitted_to_adapters: BTreeSet<u16> = BTreeSet::new();
    let mut monitoring_namespaces: BTreeSet<String> = BTreeSet::new();
    for (a, labels) in d.adapters.iter().zip(&adapter_pods) {
        let mut open: BTreeSet<u16> = BTreeSet::new();
        let metrics: BTreeSet<u16> = a.metrics_port().into_iter().collect();
        for p in d.policies.iter().filter(|p| selects(&p.selector, labels)) {
            for r in p.rules.iter().filter(|r| r.ingress) {
                open.extend(&r.ports);
                // The metrics port is plain HTTP: only the monitoring namespace. Everything
                // else (the gRPC port): only the broker.
                if !r.ports.is_empty() && r.ports.is_subset(&metrics) {
                    match monitoring_only(r) {
                        Some(ns) => {
                            monitoring_namespaces.insert(ns);
                        }
                        None => problems.push(format!(
                            "NetworkPolicy {} admits others than one monitoring namespace to {}'s metrics {:?}",
                            p.name,
                            a.dept(),
                            r.ports
                        )),
                    }
                    continue;
                }
                let only_broker = !r.peers.is_empty()
                    && r.peers.iter().all(|peer| {
                        peer.namespaces.is_none()
                            && peer.pods.as_ref().is_some_and(|s| selects(s, broker_pods))
                    });
                if !only_broker || !r.ports.is_disjoint(&metrics) {
                    problems.push(format!(
                        "NetworkPolicy {} admits others than the broker to {}",
                        p.name,
                        a.dept()
                    ));
                }
            }
        }
        for m in &metrics {
            if !open.contains(m) {
                problems.push(format!(
                    "no NetworkPolicy admits the monitoring namespace to {}'s metrics on {m}",
                    a.dept()
                ));
            }
        }
        if !open.contains(&a.listen_port()) {
            problems.push(format!(
                "no NetworkPolicy admits the broker to {} on {}",
                a.dept(),
                a.listen_port()
            ));
        }
        admitted_to_adapters.extend(open);
    }
    let adapter_all_ports: BTreeSet<u16> = d
        .adapters
        .iter()
        .flat_map(|a| [Some(a.listen_port()), a.metrics_port()])
        .flatten()
        .collect();
    if admitted_to_adapters != adapter_all_ports {
        problems.push(format!(
            "NetworkPolicy admits {admitted_to_adapters:?} to adapters; they listen on {adapter_all_ports:?}"
        ));
    }
    let mut broker_in: BTreeSet<u16> = BTreeSet::new();
    let mut broker_out: BTreeSet<u16> = BTreeSet::new();
    for p in d
        .policies
        .iter()
        .filter(|p| selects(&p.selector, broker_pods))
    {
        for r in &p.rules {
            if r.ingress {
                broker_in.extend(&r.ports);
                if let Some(m) = broker.metrics_port()
                    && r.ports.contains(&m)
                {
                    match monitoring_only(r) {
                        Some(ns) if r.ports.len() == 1 => {
                            monitoring_namespaces.insert(ns);
                        }
                        _ => problems.push(format!(
                            "NetworkPolicy {} admits others than one monitoring namespace to the broker's metrics {m}",
                            p.name
                        )),
                    }
                }
            } else if r.peers.iter().any(|peer| {
                peer.pods
                    .as_ref()
                    .is_some_and(|s| adapter_pods.iter().any(|l| selects(s, l)))
            }) {
                broker_out.extend(&r.ports);
            }
        }
    }
    let broker_ports: BTreeSet<u16> = [broker.listen_port()]
        .into_iter()
        .chain(broker.metrics_port())
        .collect();
    if broker_in != broker_ports {
        problems.push(format!(
            "NetworkPolicy admits {broker_in:?} to the broker; it listens on {broker_ports:?}"
        ));
    }
    if monitoring_namespaces.len() > 1 {
        problems.push(format!(
            "the metrics ports admit different monitoring namespaces: {monitoring_namespaces:?}"
        ));
    }
    if broker_out != adapter_ports {
        problems.push(format!(
            "NetworkPolicy lets the broker reach adapters on {broker_out:?}; they listen on {adapter_ports:?}"
        ));
    }

    // The image documents every port something in it listens on, and no other.
    let exposed: BTreeSet<u16> = read(&d.root.join("Dockerfile"))
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    if exposed != all_ports {
        problems.push(format!(
            "Dockerfile EXPOSEs {exposed:?}; the configs listen on {all_ports:?}"
        ));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn names_agree_between_endpoints_services_and_certificates() {
    let d = Deploy::load();
    let broker = d.broker.as_ref().unwrap();
    let issued = documented_certificates();
    let mut problems = Vec::new();
    for cfg in d.configs() {
        let w = d.workload_running(cfg);
        let dns: Vec<String> = d
            .services_selecting(w)
            .iter()
            .map(|s| format!("{}.{}.svc.cluster.local", s.name, s.namespace))
            .collect();
        // The certificate file the config names is the one `huitong pki issue` writes for
        // this party: <dir>/<dept>-<role>.pem.
        let (dept, role) = cert_stem(&cfg.get("tls", "cert"));
        if role != cfg.kind.role() || (cfg.kind == Kind::Adapter && dept != cfg.dept()) {
            problems.push(format!(
                "{}: tls.cert should be <dir>/<dept>-{}.pem, as huitong pki issue names it",
                cfg.name(),
                cfg.kind.role()
            ));
        }
        // The documented certificate must name what the probes dial (127.0.0.1) and what
        // peers dial: for an adapter the host in broker.toml, which must be its Service; for
        // the broker one of its Services.
        let dialled: Vec<String> = match cfg.kind {
            Kind::Adapter => {
                let e = broker.endpoint_of(&cfg.dept()).unwrap_or_default();
                let host = host_port(&e).0.to_owned();
                if !dns.contains(&host) {
                    problems.push(format!(
                        "broker.toml dials {} at {host}, which is none of its Services {dns:?}",
                        cfg.dept()
                    ));
                }
                vec![host]
            }
            Kind::Broker => dns.clone(),
        };
        let Some(hosts) = issued.get(&(dept.clone(), role.clone())) else {
            problems.push(format!(
                "secrets.example.yaml issues no {role} certificate for {dept}"
            ));
            continue;
        };
        if !hosts.iter().any(|h| h == "127.0.0.1") {
            problems.push(format!(
                "the documented {role} certificate for {dept} does not name 127.0.0.1, which its probes dial"
            ));
        }
        if !dialled.iter().any(|n| hosts.contains(n)) {
            problems.push(format!(
                "the documented {role} certificate for {dept} names {hosts:?}, none of {dialled:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn paths_agree_between_configs_mounts_and_units() {
    let d = Deploy::load();
    let mut problems = Vec::new();

    for cfg in d.configs() {
        let w = d.workload_running(cfg);
        let c = &w.containers[0];
        let files = w.projected_files(c);
        let installed = cfg.installed_path();

        // The config the container runs is the example file, mounted from a ConfigMap that
        // the manifest's documented command creates from that very file.
        match files.get(&installed) {
            None => problems.push(format!("{}: nothing is mounted at {installed}", w.origin())),
            Some(src) => {
                let from = d.created_from(w, src);
                let want = format!("deploy/examples/{}", cfg.name());
                if !from.iter().any(|f| f == &want) {
                    problems.push(format!(
                        "{}: {installed} comes from {src:?}, which no documented command creates from {want} (found {from:?})",
                        w.origin()
                    ));
                }
            }
        }
        // Every file the config names is mounted exactly there.
        for path in cfg.referenced_files() {
            let Some(src) = files.get(&path) else {
                problems.push(format!(
                    "{}: {} names {path}, which is not mounted",
                    w.origin(),
                    cfg.name()
                ));
                continue;
            };
            // Files shipped in deploy/examples (data files, the policy) come from those files.
            if let Some(rel) = path.strip_prefix("/etc/huitong/") {
                let example = d.root.join("examples").join(rel);
                if example.exists() {
                    let want = format!("deploy/examples/{rel}");
                    if !d.created_from(w, src).contains(&want) {
                        problems.push(format!("{}: {path} is not created from {want}", w.origin()));
                    }
                }
            }
        }
        // What the probes present is mounted too.
        for (what, argv) in &c.probes {
            for f in ["--ca", "--cert", "--cert-key"] {
                match flag(argv, f) {
                    Some(p) if files.contains_key(p) => {}
                    Some(p) => {
                        problems.push(format!("{} {what}: {f} {p} is not mounted", w.origin()))
                    }
                    None => problems.push(format!("{} {what}: no {f}", w.origin())),
                }
            }
        }
        // The broker's data directory lives on its persistent volume, writable.
        if let Some(data_dir) = cfg.data_dir() {
            let on_claim = c
                .mounts
                .iter()
                .any(|m| !m.read_only && w.claims.contains(&m.volume) && under(&data_dir, &m.path));
            if !on_claim {
                problems.push(format!(
                    "{}: data_dir {data_dir} is not on a volumeClaimTemplate's writable mount",
                    w.origin()
                ));
            }
        }
    }

    // Every file a documented `kubectl create` reads from deploy/ exists.
    for f in files_in(&d.root.join("kubernetes"), "yaml") {
        for files in created_objects(&read(&f)).values() {
            for (_, path) in files.iter().filter(|(_, p)| p.starts_with("deploy/")) {
                if !workspace_root().join(path).exists() {
                    problems.push(format!(
                        "{}: --from-file={path} does not exist",
                        f.display()
                    ));
                }
            }
        }
    }

    // Every Secret a manifest mounts is laid out in secrets.example.yaml with those keys, and
    // created there from the files `huitong pki` writes under those names.
    let example_secrets = d.example_secrets();
    let secret_commands = created_objects(&read(&d.root.join("kubernetes/secrets.example.yaml")));
    for w in &d.workloads {
        for src in w.projected_files(&w.containers[0]).values() {
            let Source::Secret { name, key } = src else {
                continue;
            };
            if !example_secrets
                .get(name)
                .is_some_and(|keys| keys.contains(key))
            {
                problems.push(format!(
                    "{}: Secret {name} key {key} is not in secrets.example.yaml",
                    w.origin()
                ));
            }
            let files = secret_commands.get(&("secret".into(), name.clone()));
            if !files.is_some_and(|f| f.iter().any(|(k, _)| k == key)) {
                problems.push(format!(
                    "{}: secrets.example.yaml has no kubectl create secret {name} --from-file=…/{key}",
                    w.origin()
                ));
            }
        }
    }

    // systemd: the config and every file it names are under ReadOnlyPaths; the broker's data
    // directory is its StateDirectory and its only ReadWritePaths; adapters write nothing.
    for cfg in d.configs() {
        let unit = d.unit_running(cfg);
        let ro = unit.paths("ReadOnlyPaths");
        let rw = unit.paths("ReadWritePaths");
        let mut needed = cfg.referenced_files();
        needed.push(cfg.installed_path());
        for p in needed {
            if !ro.iter().any(|r| under(&p, r)) {
                problems.push(format!(
                    "{}: {p} is not under ReadOnlyPaths {ro:?}",
                    unit.name
                ));
            }
        }
        match cfg.data_dir() {
            Some(data_dir) => {
                if rw != [data_dir.clone()] {
                    problems.push(format!(
                        "{}: ReadWritePaths {rw:?} should be exactly data_dir {data_dir}",
                        unit.name
                    ));
                }
                let state: Vec<String> = unit
                    .paths("StateDirectory")
                    .iter()
                    .map(|s| format!("/var/lib/{s}"))
                    .collect();
                if !state.iter().any(|s| under(&data_dir, s)) {
                    problems.push(format!(
                        "{}: data_dir {data_dir} is not in its StateDirectory {state:?}",
                        unit.name
                    ));
                }
            }
            None if !rw.is_empty() => problems.push(format!(
                "{}: an adapter writes nothing, yet ReadWritePaths is {rw:?}",
                unit.name
            )),
            None => {}
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn workloads_keep_their_hardening() {
    let d = Deploy::load();
    let mut problems = Vec::new();
    for w in &d.workloads {
        let pod = &w.pod_security;
        let c = &w.containers[0];
        let checks = [
            (
                pod.get("runAsNonRoot") == Some(&s("true")),
                "runAsNonRoot: true",
            ),
            (
                c.security.get("readOnlyRootFilesystem") == Some(&s("true")),
                "readOnlyRootFilesystem: true",
            ),
            (
                c.security.get("allowPrivilegeEscalation") == Some(&s("false")),
                "allowPrivilegeEscalation: false",
            ),
            (
                at(&c.security, "capabilities.drop") == Some(&Value::Array(vec![s("ALL")])),
                "capabilities.drop: [ALL]",
            ),
            (w.image == "huitong:0.1.0", "image huitong:0.1.0"),
            (c.probes.len() >= 2, "readiness and liveness probes"),
            (w.grace_seconds.is_some(), "terminationGracePeriodSeconds"),
        ];
        for (ok, what) in checks {
            if !ok {
                problems.push(format!("{}: lacks {what}", w.origin()));
            }
        }
        if w.role == "broker" && (w.kind != "StatefulSet" || w.replicas != "1") {
            problems.push(format!(
                "{}: the broker must be a StatefulSet of exactly one replica (one log writer)",
                w.origin()
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Certificates made by the documented commands, processes started with the manifests'
/// commands (paths moved into a temporary root, ports picked by the OS), the manifests'
/// probes run against them, and one query per grant in the policy file.
#[test]
fn the_example_exchange_runs_as_deployed() {
    let d = Deploy::load();
    let tmp = TempDir::new("deploy");
    let root = tmp.path();
    let relocate = |s: &str| relocate(s, root);
    // Metrics are left out: their fixed ports would clash between the three adapters here and
    // with other tests, and they are not the subject.
    install_examples(&d, root, false);
    let etc = root.join("etc/huitong");
    let pki = etc.join("pki");
    let grants = d.grants();

    // Adapters, started with their manifests' commands.
    let start = |w: &Workload| -> Proc {
        let mut args: Vec<String> = w.containers[0].command[1..]
            .iter()
            .map(|a| relocate(a))
            .collect();
        args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        Proc::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let mut running: Vec<(&Workload, Proc)> = Vec::new();
    let mut endpoints = BTreeMap::new();
    for a in &d.adapters {
        let w = d.workload_running(a);
        let p = start(w);
        endpoints.insert(a.dept(), p.endpoint());
        running.push((w, p));
    }
    // The broker dials them where they are, instead of at their Service names.
    let broker_toml = etc.join("broker.toml");
    let mut dept = String::new();
    let text: String = read(&broker_toml)
        .lines()
        .map(|l| {
            if let Some(v) = toml_value(l, "dept") {
                dept = v;
            }
            if toml_value(l, "endpoint").is_some() {
                format!("endpoint = \"{}\"\n", endpoints[&dept])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&broker_toml, text).unwrap();
    let broker_w = d.workload_running(d.broker.as_ref().unwrap());
    let broker = start(broker_w);
    let broker_url = broker.endpoint();
    running.push((broker_w, broker));

    // Every probe of every manifest, against the process it would probe.
    let probe = |w: &Workload, p: &Proc| {
        for (what, argv) in &w.containers[0].probes {
            let args: Vec<String> = argv[1..]
                .iter()
                .map(|a| {
                    if a.starts_with("https://") {
                        format!("https://127.0.0.1:{}", p.addr.port())
                    } else {
                        relocate(a)
                    }
                })
                .collect();
            let out = run_ok(&args);
            assert!(
                out.contains("SERVING"),
                "{} {what} printed {out:?}",
                w.origin()
            );
        }
    };
    for (w, p) in &running {
        probe(w, p);
    }

    // Every grant in the policy file works: the broker loaded it, and its resource, fields and
    // purpose match what the adapters describe.
    for g in &grants {
        let (provider, _) = g.resource.split_once('/').unwrap();
        let adapter = d.adapters.iter().find(|a| a.dept() == provider).unwrap();
        let (key_field, data) = adapter.resource_key_and_data(&g.resource);
        let first = read(&data).lines().next().unwrap().to_owned();
        let record: Map<String, Value> = serde_json::from_str(&first).unwrap();
        let key = match &record[&key_field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let cert = pki.join(format!("{}-consumer.pem", g.consumer));
        let ca = pki.join("ca.pem");
        let key_arg = format!("{key_field}={key}");
        let fields = g.fields.join(",");
        let out = run_ok(&[
            "query",
            "--broker",
            broker_url.as_str(),
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            g.resource.as_str(),
            "--key",
            key_arg.as_str(),
            "--fields",
            fields.as_str(),
            "--purpose",
            g.purposes[0].as_str(),
        ]);
        let answer: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            answer["records"].as_array().map(Vec::len),
            Some(1),
            "{} querying {}: {out}",
            g.consumer,
            g.resource
        );
        assert!(
            answer["grant_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("P-")),
            "{} querying {} was not answered under a policy-file grant: {out}",
            g.consumer,
            g.resource
        );
    }

    // `systemctl reload huitong-broker`: the unit's ExecReload, run with the broker's pid as
    // $MAINPID, makes it reread the policy file and it goes on serving.
    let broker_cfg = d.broker.as_ref().unwrap();
    let reload = d.unit_running(broker_cfg).all("ExecReload");
    assert_eq!(
        reload.len(),
        1,
        "the broker's unit should have one ExecReload"
    );
    let (w, p) = running.iter().find(|(w, _)| w.role == "broker").unwrap();
    let pid = pid_running_with(&broker_toml);
    let argv = exec_argv(&reload[0].replace("$MAINPID", &pid.to_string()));
    let status = Command::new(&argv[0]).args(&argv[1..]).status().unwrap();
    assert!(status.success(), "ExecReload {argv:?} failed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !p.stderr().contains("policy file reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker did not reload its policy file on {argv:?}:\n{}",
            p.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    probe(w, p);

    // SIGTERM, as systemd and the kubelet send it, ends each one cleanly.
    for (w, p) in running.into_iter().rev() {
        let status = p.terminate();
        assert!(
            status.success(),
            "{} exited {status:?} on SIGTERM",
            w.origin()
        );
    }
}

/// Metrics are plain HTTP without authentication. On a host the example configs bind them to
/// loopback; in Kubernetes loopback cannot be scraped from another pod, so every documented
/// command that makes a ConfigMap from such a config pipes it through a `sed` that rebinds the
/// address to 0.0.0.0 (in a pod: the pod's own address, behind the NetworkPolicy) and changes
/// nothing else.
#[test]
fn metrics_bind_loopback_on_hosts_and_the_pod_address_in_kubernetes() {
    let d = Deploy::load();
    let mut problems = Vec::new();
    // Every pipeline documented in deploy/: comments in every file, and the README's blocks.
    let mut pipelines: Vec<(String, Vec<String>)> = Vec::new();
    for f in files_in(&d.root.join("kubernetes"), "yaml") {
        let origin = f.file_name().unwrap().to_str().unwrap().to_owned();
        for p in commented_pipelines(&read(&f)) {
            pipelines.push((origin.clone(), p));
        }
    }
    for p in commented_pipelines(&fenced_as_comments(&read(&d.root.join("README.md")))) {
        pipelines.push(("README.md".to_owned(), p));
    }
    let mut rebinding_seen = 0;
    for cfg in d.configs() {
        let Some(port) = cfg.metrics_port() else {
            problems.push(format!("{}: no metrics_listen", cfg.name()));
            continue;
        };
        let host = cfg.metrics_host().unwrap();
        if host != "127.0.0.1" && host != "[::1]" {
            problems.push(format!(
                "{}: metrics_listen on {host}; on a host it must be loopback",
                cfg.name()
            ));
            continue;
        }
        let text = read(&cfg.path);
        let example = format!("deploy/examples/{}", cfg.name());
        let makers: Vec<&(String, Vec<String>)> = pipelines
            .iter()
            .filter(|(_, p)| {
                p.first().is_some_and(|w| w == "kubectl")
                    && p.iter().any(|w| w == "configmap")
                    && p.iter().any(|w| {
                        w.strip_prefix("--from-file=")
                            .is_some_and(|f| f.rsplit('=').next() == Some(example.as_str()))
                    })
            })
            .collect();
        if makers.is_empty() {
            problems.push(format!(
                "no documented command makes a ConfigMap from {example}"
            ));
        }
        for (origin, p) in makers {
            let Some(expr) = p.iter().position(|w| w == "sed").and_then(|i| p.get(i + 1)) else {
                problems.push(format!(
                    "{origin}: `{}` makes a ConfigMap from {example} without rebinding its metrics",
                    p.join(" ")
                ));
                continue;
            };
            let Some((from, to)) = sed_substitution(expr) else {
                problems.push(format!("{origin}: cannot read the sed expression {expr:?}"));
                continue;
            };
            // sed runs on kubectl's YAML, where the file's lines may be escaped: the address
            // alone is what it can match, so the address must occur once, in metrics_listen.
            let hits: Vec<&str> = text.lines().filter(|l| l.contains(&from)).collect();
            if hits.len() != 1
                || !hits[0].starts_with("metrics_listen")
                || text.matches(&from).count() != 1
            {
                problems.push(format!(
                    "{origin}: the sed rewrites {from:?}, which {example} has {} times (lines {hits:?}); it must be only in metrics_listen",
                    text.matches(&from).count()
                ));
                continue;
            }
            let rebound = hits[0].replace(&from, &to);
            let want = format!("metrics_listen = \"0.0.0.0:{port}\"");
            if strip_toml_comment(&rebound) != want {
                problems.push(format!(
                    "{origin}: the sed turns {:?} into {rebound:?}, not {want:?}",
                    hits[0]
                ));
            }
            if !p.iter().any(|w| w == "--dry-run=client") || !p.iter().any(|w| w == "apply") {
                problems.push(format!(
                    "{origin}: `{}` should render with --dry-run=client -o yaml and kubectl apply the result",
                    p.join(" ")
                ));
            }
            rebinding_seen += 1;
        }
    }
    assert!(
        rebinding_seen >= 4,
        "found only {rebinding_seen} ConfigMap commands"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// A stop must be allowed to take as long as the server's own grace: systemd's TimeoutStopSec
/// and Kubernetes' terminationGracePeriodSeconds (which includes the preStop pause) both above
/// `shutdown_grace_seconds` with a margin for the last checkpoint, or every restart ends in
/// SIGKILL. Units are `Type=notify` with a watchdog: the servers speak sd_notify.
#[test]
fn stop_timeouts_cover_the_shutdown_grace() {
    let d = Deploy::load();
    let mut problems = Vec::new();
    const MARGIN: u64 = 5;
    for cfg in d.configs() {
        let grace = cfg.grace_seconds();
        let unit = d.unit_running(cfg);
        let one = |key: &str| -> Option<String> {
            let all = unit.all(key);
            (all.len() == 1).then(|| all[0].to_owned())
        };
        for (key, want) in [
            ("Type", "notify"),
            ("NotifyAccess", "main"),
            ("KillSignal", "SIGTERM"),
        ] {
            if one(key).as_deref() != Some(want) {
                problems.push(format!("{}: {key} should be {want}", unit.name));
            }
        }
        match one("WatchdogSec").as_deref().map(systemd_seconds) {
            Some(Some(w)) if w > 0 => {}
            _ => problems.push(format!("{}: no WatchdogSec", unit.name)),
        }
        match one("TimeoutStopSec").as_deref().map(systemd_seconds) {
            Some(Some(s)) if s >= grace + MARGIN => {}
            other => problems.push(format!(
                "{}: TimeoutStopSec {other:?} s is not above {}'s grace of {grace} s plus {MARGIN}",
                unit.name,
                cfg.name()
            )),
        }
        let w = d.workload_running(cfg);
        let pause = w.containers[0].pre_stop_seconds;
        if pause.is_none() {
            problems.push(format!(
                "{}: no preStop pause, so the pod stops accepting before the Services forget it",
                w.origin()
            ));
        }
        let total: u64 = w
            .grace_seconds
            .as_deref()
            .and_then(|g| g.parse().ok())
            .unwrap_or(30);
        if total < pause.unwrap_or(0) + grace + MARGIN {
            problems.push(format!(
                "{}: terminationGracePeriodSeconds {total} is not above the preStop pause {pause:?} plus {}'s grace of {grace} s plus {MARGIN}",
                w.origin(),
                cfg.name()
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Every `huitong …` command line in the docs parses with the binary: see the module docs.
#[test]
fn every_documented_huitong_command_parses() {
    let mut cli = Cli::default();
    let mut problems = Vec::new();
    let mut commands = doc_commands();
    // And the commands in the deployment files' comments (deploy/README.md is read above).
    commands.extend(
        documented_commands()
            .into_iter()
            .filter(|(origin, argv)| origin != "README.md" && argv[0] == "huitong")
            .map(|(origin, argv)| DocCommand {
                origin: format!("deploy/{origin}"),
                argv,
                refusal: None,
                inline: false,
            }),
    );
    let from_docs = commands
        .iter()
        .filter(|c| c.origin.starts_with("docs/"))
        .count();
    assert!(
        from_docs >= 60 && commands.len() >= 80,
        "found only {} documented commands ({from_docs} in docs/); is the reading broken?",
        commands.len()
    );
    let mut refusals = 0;
    for c in &commands {
        let mut found = Vec::new();
        cli.check(&c.argv[1..], false, &c.origin, &mut found);
        // Prose may name a command group (`huitong pki`).
        problems.extend(
            found
                .into_iter()
                .filter(|p| !(c.inline && p.contains("lacks a subcommand"))),
        );
        let mut args: Vec<String> = c.argv[1..]
            .iter()
            .take_while(|a| *a != "--")
            .cloned()
            .collect();
        args.push("--help".into());
        let out = clean_command().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = c.argv.join(" ");
        match &c.refusal {
            // A refusal that parses is the server's (PERMISSION_DENIED, …), not checked here;
            // one that does not must be refused as the docs say.
            Some(_) if out.status.success() => {}
            Some(error) => {
                refusals += 1;
                if !stderr.contains(error.as_str()) {
                    problems.push(format!(
                        "{}: `{shown}` is documented to fail with {error:?}, but says: {stderr}",
                        c.origin
                    ));
                }
            }
            None if out.status.success() => {}
            // Prose may name a flag without its value (`huitong demo --init`).
            None if c.inline && stderr.contains("a value is required for") => {}
            None => {
                // A placeholder where a number or a choice goes is the docs' business.
                let placeholder = stderr
                    .split("invalid value '")
                    .nth(1)
                    .and_then(|r| r.split('\'').next())
                    .is_some_and(is_placeholder);
                if !placeholder {
                    problems.push(format!("{}: `{shown}` does not parse: {stderr}", c.origin));
                }
            }
        }
    }
    assert!(
        refusals >= 1,
        "the documented refusal (an unknown --zone) was not found"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Fenced TOML in the docs is a whole file that `huitong config check` accepts, or marked as a
/// fragment: see the module docs.
#[test]
fn every_documented_toml_file_passes_config_check() {
    let tmp = TempDir::new("doc-toml");
    huitong_tests::init_demo(tmp.path(), 500);
    let mut written: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (origin, name, text) in doc_data_files() {
        if let Some((first, before)) = written.get(&name) {
            assert_eq!(
                before, &text,
                "{origin} and {first} both show the file {name}, differently"
            );
            continue;
        }
        let path = tmp.path().join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        // As the docs say to keep secrets; a file others may read only earns a warning.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        written.insert(name, (origin, text));
    }
    let blocks = doc_toml_blocks();
    let checked = blocks.iter().filter(|b| !b.fragment).count();
    assert!(
        blocks.len() >= 7 && checked >= 3,
        "found {} TOML blocks, {checked} to check; is the reading broken?",
        blocks.len()
    );
    let mut problems = Vec::new();
    for (i, b) in blocks.iter().enumerate().filter(|(_, b)| !b.fragment) {
        let path = tmp.path().join(format!("doc-block-{i}.toml"));
        std::fs::write(&path, &b.text).unwrap();
        let out = clean_command()
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        if !out.status.success() {
            problems.push(format!(
                "{}: this block fails `huitong config check` (mark it <!-- fragment --> if it is one):\n{}\n{}{}",
                b.origin,
                b.text,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Every documented `HUITONG_…=value` works with the binary: see the module docs.
#[test]
fn every_documented_environment_variable_works() {
    let d = Deploy::load();
    let tmp = TempDir::new("doc-env");
    huitong_tests::init_demo(tmp.path(), 500);
    let config = tmp.path().join("broker.toml");
    assert!(config.exists(), "huitong demo --init wrote no broker.toml");

    let mut assignments = doc_env_assignments();
    for unit in &d.units {
        for e in unit.all("Environment") {
            for w in shell_words(e) {
                if let Some((k, v)) = w.split_once('=') {
                    assignments.push((unit.name.clone(), k.to_owned(), v.to_owned()));
                }
            }
        }
    }
    for w in &d.workloads {
        for (k, v) in &w.containers[0].env {
            assignments.push((w.origin(), k.clone(), v.clone()));
        }
    }
    assignments.retain(|(_, k, _)| k.starts_with("HUITONG_"));
    assert!(
        assignments.iter().any(|(_, k, _)| k == "HUITONG_LOG_JSON"),
        "HUITONG_LOG_JSON=… is documented in operations.md; is the reading broken?"
    );

    let mut cli = Cli::default();
    let declared = cli.env_declarations();
    let sources = rust_sources(&workspace_root().join("crates"));
    let tests = rust_sources(&workspace_root().join("tests"));
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (origin, name, value) in assignments {
        if !seen.insert((name.clone(), value.clone())) {
            continue;
        }
        let paths = declared.get(&name);
        let run = if paths.is_some_and(|p| p.iter().any(Vec::is_empty))
            || (paths.is_none() && sources.contains(&format!("\"{name}\"")))
        {
            // Read by every command (a global flag, the log filter): a real command with it.
            let out = clean_command()
                .env(&name, &value)
                .args(["config", "check"])
                .arg(&config)
                .output()
                .unwrap();
            (out.status.success(), out)
        } else if let Some(paths) = paths {
            // A subcommand's: run one that lacks a required argument, so that clap reads the
            // variable, then stops before anything runs.
            let Some(path) = paths.iter().find(|p| cli.help(p).needs_arguments()) else {
                problems.push(format!(
                    "{origin}: {name} is read only by {paths:?}, none of which can be run here without doing something"
                ));
                continue;
            };
            let out = clean_command()
                .env(&name, &value)
                .args(path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            (
                out.status.code() == Some(2)
                    && stderr.contains("required")
                    && !stderr.contains("invalid value"),
                out,
            )
        } else {
            let harness = tests.contains(&format!("\"{name}\""))
                || name
                    .strip_prefix("HUITONG_REQUIRE_")
                    .is_some_and(|n| tests.contains(&format!("required(\"{n}\")")));
            if !harness {
                problems.push(format!(
                    "{origin}: {name} is documented, but neither huitong nor the tests read it"
                ));
            }
            continue;
        };
        if !run.0 {
            problems.push(format!(
                "{origin}: {name}={value} does not work: {:?}\n{}{}",
                run.1.status,
                String::from_utf8_lossy(&run.1.stdout),
                String::from_utf8_lossy(&run.1.stderr)
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The example files installed under `root` as on a host (`etc/huitong`, `var/lib/huitong`),
/// with the CA and server certificates made exactly as secrets.example.yaml says, and a
/// consumer certificate for every consumer the policy file grants something to.
/// `metrics`: keep the configs' `metrics_listen`.
fn install_examples(d: &Deploy, root: &Path, metrics: bool) {
    let etc = root.join("etc/huitong");
    let install = |s: &str| -> String {
        relocate(s, root)
            .lines()
            .filter(|l| metrics || !l.starts_with("metrics_listen"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    copy_tree(&d.root.join("examples"), &etc, &install);
    std::fs::create_dir_all(root.join("var/lib/huitong")).unwrap();
    let pki = etc.join("pki");
    for (origin, argv) in documented_commands() {
        if !origin.ends_with("secrets.example.yaml")
            || argv.get(1).map(String::as_str) != Some("pki")
        {
            continue;
        }
        // `--dir pki` is the CA directory; here it is the one the configs name.
        let args: Vec<String> = argv[1..]
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if argv[i] == "--dir" {
                    pki.to_str().unwrap().to_owned()
                } else {
                    a.clone()
                }
            })
            .collect();
        run_ok(&args);
    }
    // Consumers' certificates for the grants, which a department would hold.
    let grants = d.grants();
    assert!(!grants.is_empty(), "policy.toml declares no grants");
    for consumer in grants.iter().map(|g| &g.consumer).collect::<BTreeSet<_>>() {
        run_ok(&[
            "pki",
            "issue",
            "--dir",
            pki.to_str().unwrap(),
            "--dept",
            consumer.as_str(),
            "--role",
            "consumer",
        ]);
    }
}

/// `/etc/huitong` and `/var/lib/huitong` moved under `root`.
fn relocate(s: &str, root: &Path) -> String {
    s.replace("/etc/huitong", root.join("etc/huitong").to_str().unwrap())
        .replace(
            "/var/lib/huitong",
            root.join("var/lib/huitong").to_str().unwrap(),
        )
}

// ---------------------------------------------------------------------------------------------
// The deployment files, read
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Deploy {
    /// `<workspace>/deploy`.
    root: PathBuf,
    broker: Option<Config>,
    adapters: Vec<Config>,
    workloads: Vec<Workload>,
    services: Vec<Service>,
    policies: Vec<Policy>,
    units: Vec<Unit>,
    /// Every Kubernetes document, by file.
    docs: Vec<(String, Value)>,
}

impl Deploy {
    fn load() -> Deploy {
        let root = workspace_root().join("deploy");
        let mut broker = None;
        let mut adapters = Vec::new();
        for path in files_in(&root.join("examples"), "toml") {
            let cfg = Config::read(&path);
            match cfg.kind {
                Kind::Broker => {
                    // policy.toml has neither `dept` nor `[broker]`; it is no server config.
                    if cfg.sections.iter().any(|s| s.name == "broker") {
                        assert!(broker.is_none(), "two broker configs in deploy/examples");
                        broker = Some(cfg);
                    }
                }
                Kind::Adapter => adapters.push(cfg),
            }
        }
        let mut docs = Vec::new();
        for path in files_in(&root.join("kubernetes"), "yaml") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            for doc in yaml_documents(&read(&path)) {
                docs.push((name.clone(), doc));
            }
        }
        let mut workloads = Vec::new();
        let mut services = Vec::new();
        let mut policies = Vec::new();
        for (file, doc) in &docs {
            match str_at(doc, "kind") {
                "StatefulSet" | "Deployment" => workloads.push(Workload::read(file, doc)),
                "Service" => services.push(Service::read(doc)),
                "NetworkPolicy" => policies.push(Policy::read(doc)),
                _ => {}
            }
        }
        let units = files_in(&root.join("systemd"), "service")
            .iter()
            .map(|p| Unit::read(p))
            .collect();
        Deploy {
            root,
            broker,
            adapters,
            workloads,
            services,
            policies,
            units,
            docs,
        }
    }

    fn configs(&self) -> impl Iterator<Item = &Config> {
        self.broker.iter().chain(&self.adapters)
    }

    /// The one workload whose container runs `huitong <role> --config <cfg's installed path>`.
    fn workload_running(&self, cfg: &Config) -> &Workload {
        let want = cfg.installed_path();
        let found: Vec<&Workload> = self
            .workloads
            .iter()
            .filter(|w| w.config.as_deref() == Some(want.as_str()))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one Kubernetes workload running --config {want}, found {}",
            found.len()
        );
        assert_eq!(found[0].role, cfg.kind.role(), "{}", found[0].origin());
        found[0]
    }

    /// The systemd unit whose ExecStart runs `cfg` (the adapter template with %i = its dept).
    fn unit_running(&self, cfg: &Config) -> &Unit {
        let want = cfg.installed_path();
        self.units
            .iter()
            .find(|u| {
                u.all("ExecStart").iter().any(|l| {
                    let argv = exec_argv(&l.replace("%i", &cfg.dept_or_empty()));
                    argv.get(1).map(String::as_str) == Some(cfg.kind.role())
                        && flag(&argv, "--config") == Some(want.as_str())
                })
            })
            .unwrap_or_else(|| panic!("no systemd unit runs --config {want}"))
    }

    fn services_selecting(&self, w: &Workload) -> Vec<&Service> {
        self.services
            .iter()
            .filter(|s| !s.selector.is_empty() && selects(&s.selector, &w.pod_labels))
            .collect()
    }

    /// The deploy/ files a documented `kubectl create configmap|secret` command in `w`'s
    /// manifest puts under `src`'s key.
    fn created_from(&self, w: &Workload, src: &Source) -> Vec<String> {
        let (kind, name, key) = match src {
            Source::ConfigMap { name, key } => ("configmap", name, key),
            Source::Secret { name, key } => ("secret", name, key),
        };
        let text = read(&self.root.join("kubernetes").join(&w.file));
        created_objects(&text)
            .remove(&(kind.to_owned(), name.clone()))
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, path)| path)
            .collect()
    }

    /// Secret name → keys, from secrets.example.yaml.
    fn example_secrets(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.docs
            .iter()
            .filter(|(f, d)| f == "secrets.example.yaml" && str_at(d, "kind") == "Secret")
            .map(|(_, d)| {
                let keys = ["data", "stringData"]
                    .iter()
                    .filter_map(|k| d.get(*k).and_then(Value::as_object))
                    .flat_map(|m| m.keys().cloned())
                    .collect();
                (str_at(d, "metadata.name").to_owned(), keys)
            })
            .collect()
    }

    fn grants(&self) -> Vec<Grant> {
        let policy = self.broker.as_ref().unwrap().get("broker", "policy");
        let path = self
            .root
            .join("examples")
            .join(policy.strip_prefix("/etc/huitong/").unwrap());
        Config::read(&path)
            .sections
            .iter()
            .filter(|s| s.name == "grants")
            .map(|s| Grant {
                consumer: s.string("consumer"),
                resource: s.string("resource"),
                fields: s.list("fields"),
                purposes: s.list("purposes"),
            })
            .collect()
    }
}

#[derive(Debug)]
struct Grant {
    consumer: String,
    resource: String,
    fields: Vec<String>,
    purposes: Vec<String>,
}

// --- the TOML configs ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Broker,
    Adapter,
}

impl Kind {
    fn role(self) -> &'static str {
        match self {
            Kind::Broker => "broker",
            Kind::Adapter => "adapter",
        }
    }
}

/// A config file as `(table, key = raw value)` lines: enough for the keys these tests need.
/// Each `[table]` or `[[table]]` header starts a new section, so arrays of tables stay apart.
#[derive(Debug)]
struct Config {
    path: PathBuf,
    kind: Kind,
    sections: Vec<Section>,
}

#[derive(Debug)]
struct Section {
    name: String,
    entries: Vec<(String, String)>,
}

impl Section {
    fn raw(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn string(&self, key: &str) -> String {
        let raw = self
            .raw(key)
            .unwrap_or_else(|| panic!("[{}] has no {key}", self.name));
        toml_string(raw)
    }

    fn list(&self, key: &str) -> Vec<String> {
        let raw = self.raw(key).unwrap_or("[]");
        let inner = raw
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or_else(|| panic!("{key} = {raw} is not a one-line list"));
        inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(toml_string)
            .collect()
    }
}

impl Config {
    fn read(path: &Path) -> Config {
        let mut sections = vec![Section {
            name: String::new(),
            entries: Vec::new(),
        }];
        for line in read(path).lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(h) = line.strip_prefix('[') {
                let name = h.trim_start_matches('[').trim_end_matches(']').trim();
                sections.push(Section {
                    name: name.to_owned(),
                    entries: Vec::new(),
                });
            } else if let Some((k, v)) = line.split_once('=') {
                sections
                    .last_mut()
                    .unwrap()
                    .entries
                    .push((k.trim().to_owned(), strip_toml_comment(v.trim())));
            }
        }
        let kind = if sections[0].raw("dept").is_some() {
            Kind::Adapter
        } else {
            Kind::Broker
        };
        Config {
            path: path.to_owned(),
            kind,
            sections,
        }
    }

    fn name(&self) -> String {
        self.path.file_name().unwrap().to_str().unwrap().to_owned()
    }

    /// Where the config is installed: the examples are laid out as /etc/huitong.
    fn installed_path(&self) -> String {
        format!("/etc/huitong/{}", self.name())
    }

    fn section(&self, name: &str) -> &Section {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{}: no [{name}]", self.name()))
    }

    fn get(&self, section: &str, key: &str) -> String {
        self.section(section).string(key)
    }

    /// The server's own table: `[broker]` for the broker, the top level for an adapter.
    fn server(&self) -> &Section {
        match self.kind {
            Kind::Broker => self.section("broker"),
            Kind::Adapter => self.section(""),
        }
    }

    fn dept(&self) -> String {
        self.get("", "dept")
    }

    fn dept_or_empty(&self) -> String {
        self.section("")
            .raw("dept")
            .map(toml_string)
            .unwrap_or_default()
    }

    fn listen_port(&self) -> u16 {
        host_port(&self.server().string("listen")).1
    }

    fn metrics_port(&self) -> Option<u16> {
        self.server()
            .raw("metrics_listen")
            .map(|m| host_port(&toml_string(m)).1)
    }

    fn metrics_host(&self) -> Option<String> {
        self.server()
            .raw("metrics_listen")
            .map(|m| host_port(&toml_string(m)).0.to_owned())
    }
    /// `shutdown_grace_seconds`, or the default both servers share.
    fn grace_seconds(&self) -> u64 {
        self.server()
            .raw("shutdown_grace_seconds")
            .map_or(10, |v| v.trim().parse().unwrap())
    }
    fn data_dir(&self) -> Option<String> {
        (self.kind == Kind::Broker).then(|| self.resolve(&self.get("broker", "data_dir")))
    }

    /// A path as the server resolves it: relative to the config file's directory.
    fn resolve(&self, p: &str) -> String {
        if p.starts_with('/') {
            p.to_owned()
        } else {
            format!("/etc/huitong/{p}")
        }
    }

    /// Every file the server reads besides the config: certificates, policy, data files.
    fn referenced_files(&self) -> Vec<String> {
        let mut out: Vec<String> = ["ca", "cert", "key", "crl"]
            .iter()
            .filter_map(|k| self.section("tls").raw(k))
            .map(|v| self.resolve(&toml_string(v)))
            .collect();
        for s in &self.sections {
            match s.name.as_str() {
                "broker" => out.extend(s.raw("policy").map(|p| self.resolve(&toml_string(p)))),
                "resources.source" => out.push(self.resolve(&s.string("path"))),
                _ => {}
            }
        }
        out
    }

    fn endpoint_of(&self, dept: &str) -> Option<String> {
        self.sections
            .iter()
            .filter(|s| s.name == "adapters")
            .find(|s| s.string("dept") == dept)
            .map(|s| s.string("endpoint"))
    }

    /// A resource's first key field and its data file, in deploy/examples.
    fn resource_key_and_data(&self, resource: &str) -> (String, PathBuf) {
        let name = resource.split_once('/').unwrap().1;
        let mut current = None;
        for s in &self.sections {
            match s.name.as_str() {
                "resources" => current = (s.string("name") == name).then(|| s.list("key_fields")),
                "resources.source" => {
                    if let Some(keys) = &current {
                        let path = self.path.parent().unwrap().join(s.string("path"));
                        return (keys[0].clone(), path);
                    }
                }
                _ => {}
            }
        }
        panic!("{}: no resource {name} with a source", self.name())
    }
}

fn strip_toml_comment(v: &str) -> String {
    let mut quoted = false;
    for (i, ch) in v.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '#' if !quoted => return v[..i].trim().to_owned(),
            _ => {}
        }
    }
    v.to_owned()
}

/// A basic TOML string's contents (the configs use no escapes but `\\` and `\"`).
fn toml_string(raw: &str) -> String {
    let raw = raw.trim();
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{raw} is not a string"));
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// `key = "value"` on one line, or None.
fn toml_value(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == key).then(|| toml_string(&strip_toml_comment(v.trim())))
}

// --- Kubernetes ---------------------------------------------------------------------------

#[derive(Debug)]
struct Workload {
    file: String,
    kind: String,
    name: String,
    replicas: String,
    /// `broker` or `adapter`: the huitong subcommand its container runs.
    role: String,
    /// The container's `--config`.
    config: Option<String>,
    image: String,
    pod_labels: Map<String, Value>,
    annotations: Map<String, Value>,
    pod_security: Value,
    grace_seconds: Option<String>,
    containers: Vec<Container>,
    /// Pod volumes by name.
    volumes: Map<String, Value>,
    /// volumeClaimTemplates' names (StatefulSet).
    claims: Vec<String>,
}

#[derive(Debug)]
struct Container {
    command: Vec<String>,
    /// containerPort by port name (or by number, for unnamed ports).
    ports: BTreeMap<String, u16>,
    /// (`readinessProbe` …, exec command) for each exec probe.
    probes: Vec<(String, Vec<String>)>,
    mounts: Vec<Mount>,
    security: Value,
    /// Seconds the `preStop` hook pauses (the kubelet's `sleep` action or an exec of sleep).
    pre_stop_seconds: Option<u64>,
    /// `env` entries with a literal `value`.
    env: Vec<(String, String)>,
}

#[derive(Debug)]
struct Mount {
    volume: String,
    path: String,
    read_only: bool,
}

/// Where a mounted file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    ConfigMap { name: String, key: String },
    Secret { name: String, key: String },
}

impl Container {
    fn read(c: &Value) -> Container {
        let command = strings(c.get("command"));
        let mut ports = BTreeMap::new();
        for p in list(c.get("ports")) {
            let n: u16 = str_at(p, "containerPort").parse().unwrap();
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| n.to_string(), str::to_owned);
            ports.insert(name, n);
        }
        let mut probes = Vec::new();
        for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
            if let Some(p) = c.get(kind) {
                let cmd = strings(at(p, "exec.command"));
                assert!(!cmd.is_empty(), "{kind} is not an exec probe");
                probes.push((kind.to_owned(), cmd));
            }
        }
        let mounts = list(c.get("volumeMounts"))
            .iter()
            .map(|m| Mount {
                volume: str_at(m, "name").to_owned(),
                path: str_at(m, "mountPath").trim_end_matches('/').to_owned(),
                read_only: m.get("readOnly") == Some(&s("true")),
            })
            .collect();
        let pre_stop = at(c, "lifecycle.preStop");
        let pre_stop_seconds = pre_stop.and_then(|h| {
            if let Some(s) = at(h, "sleep.seconds") {
                return s.as_str().and_then(|s| s.parse().ok());
            }
            let cmd = strings(at(h, "exec.command"));
            match cmd.as_slice() {
                [sleep, n] if file_name(sleep) == "sleep" => n.parse().ok(),
                _ => None,
            }
        });
        assert!(
            pre_stop.is_none() || pre_stop_seconds.is_some(),
            "a preStop hook other than a pause is not read here: {pre_stop:?}"
        );
        let env = list(c.get("env"))
            .iter()
            .filter_map(|e| {
                Some((
                    str_at(e, "name").to_owned(),
                    e.get("value")?.as_str()?.to_owned(),
                ))
            })
            .collect();
        Container {
            command,
            ports,
            probes,
            mounts,
            security: c.get("securityContext").cloned().unwrap_or_default(),
            pre_stop_seconds,
            env,
        }
    }

    /// The container's command and each probe's, to check against `--help`.
    fn invocations(&self) -> Vec<(String, Vec<String>)> {
        let mut out = vec![("command".to_owned(), self.command.clone())];
        out.extend(self.probes.iter().cloned());
        out
    }
}

impl Workload {
    fn read(file: &str, doc: &Value) -> Workload {
        let spec = &doc["spec"];
        let pod = &spec["template"]["spec"];
        let containers: Vec<Container> = list(pod.get("containers"))
            .iter()
            .map(Container::read)
            .collect();
        assert_eq!(
            containers.len(),
            1,
            "{file}: expected one container per pod"
        );
        let command = &containers[0].command;
        let role = command.get(1).cloned().unwrap_or_default();
        let config = flag(command, "--config").map(str::to_owned);
        let volumes = list(pod.get("volumes"))
            .iter()
            .map(|v| (str_at(v, "name").to_owned(), v.clone()))
            .collect();
        let claims = list(spec.get("volumeClaimTemplates"))
            .iter()
            .map(|c| str_at(c, "metadata.name").to_owned())
            .collect();
        Workload {
            file: file.to_owned(),
            kind: str_at(doc, "kind").to_owned(),
            name: str_at(doc, "metadata.name").to_owned(),
            replicas: str_at(doc, "spec.replicas").to_owned(),
            role,
            config,
            image: list(pod.get("containers"))
                .first()
                .map(|c| str_at(c, "image").to_owned())
                .unwrap_or_default(),
            pod_labels: object(at(spec, "template.metadata.labels")),
            annotations: object(at(spec, "template.metadata.annotations")),
            pod_security: pod.get("securityContext").cloned().unwrap_or_default(),
            grace_seconds: pod
                .get("terminationGracePeriodSeconds")
                .and_then(Value::as_str)
                .map(str::to_owned),
            containers,
            volumes,
            claims,
        }
    }

    fn origin(&self) -> String {
        format!("{} {}/{}", self.file, self.kind, self.name)
    }

    /// Every file path inside `c` that a projected volume (or a ConfigMap or Secret volume
    /// with `items`) puts there, and where it comes from.
    fn projected_files(&self, c: &Container) -> BTreeMap<String, Source> {
        let mut out = BTreeMap::new();
        for m in &c.mounts {
            let Some(v) = self.volumes.get(&m.volume) else {
                // A StatefulSet's claim: a writable volume, no files of ours.
                assert!(
                    self.claims.contains(&m.volume),
                    "{}: mount of unknown volume {}",
                    self.origin(),
                    m.volume
                );
                continue;
            };
            let sources: Vec<Value> = if let Some(p) = v.get("projected") {
                list(p.get("sources")).to_vec()
            } else {
                let mut one = Map::new();
                for k in ["configMap", "secret"] {
                    if let Some(x) = v.get(k) {
                        one.insert(k.to_owned(), x.clone());
                    }
                }
                vec![Value::Object(one)]
            };
            for src in &sources {
                for (k, kind) in [("configMap", "configmap"), ("secret", "secret")] {
                    let Some(x) = src.get(k) else { continue };
                    // Secret volumes name theirs `secretName`, projections `name`.
                    let name = x
                        .get("name")
                        .or_else(|| x.get("secretName"))
                        .and_then(Value::as_str)
                        .unwrap()
                        .to_owned();
                    let items = list(x.get("items"));
                    assert!(
                        !items.is_empty(),
                        "{}: {kind} {name} is mounted without `items`; list them so that the paths are visible",
                        self.origin()
                    );
                    for item in items {
                        let key = str_at(item, "key").to_owned();
                        let path = format!("{}/{}", m.path, str_at(item, "path"));
                        let source = if kind == "secret" {
                            Source::Secret {
                                name: name.clone(),
                                key,
                            }
                        } else {
                            Source::ConfigMap {
                                name: name.clone(),
                                key,
                            }
                        };
                        out.insert(path, source);
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug)]
struct Service {
    name: String,
    namespace: String,
    selector: Map<String, Value>,
    ports: Vec<ServicePort>,
}

#[derive(Debug)]
struct ServicePort {
    name: String,
    port: u16,
    /// A number or a container port's name.
    target: String,
}

impl Service {
    fn read(doc: &Value) -> Service {
        Service {
            name: str_at(doc, "metadata.name").to_owned(),
            namespace: str_at(doc, "metadata.namespace").to_owned(),
            selector: object(at(doc, "spec.selector")),
            ports: list(at(doc, "spec.ports"))
                .iter()
                .map(|p| {
                    let port = str_at(p, "port").to_owned();
                    ServicePort {
                        name: p
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        port: port.parse().unwrap(),
                        target: p
                            .get("targetPort")
                            .and_then(Value::as_str)
                            .map_or(port, str::to_owned),
                    }
                })
                .collect(),
        }
    }
}

#[derive(Debug)]
struct Policy {
    name: String,
    selector: Map<String, Value>,
    types: Vec<String>,
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    ingress: bool,
    /// `from` or `to`; empty means any peer.
    peers: Vec<Peer>,
    ports: BTreeSet<u16>,
}

#[derive(Debug)]
struct Peer {
    pods: Option<Map<String, Value>>,
    namespaces: Option<Map<String, Value>>,
}

impl Policy {
    fn read(doc: &Value) -> Policy {
        let spec = &doc["spec"];
        let mut rules = Vec::new();
        for (key, peers_key, ingress) in [("ingress", "from", true), ("egress", "to", false)] {
            for r in list(spec.get(key)) {
                let peers = list(r.get(peers_key))
                    .iter()
                    .map(|p| {
                        assert!(
                            p.get("ipBlock").is_none(),
                            "ipBlock peers are not read here"
                        );
                        Peer {
                            pods: p.get("podSelector").map(|s| object(s.get("matchLabels"))),
                            namespaces: p
                                .get("namespaceSelector")
                                .map(|s| object(s.get("matchLabels"))),
                        }
                    })
                    .collect();
                let ports = list(r.get("ports"))
                    .iter()
                    .map(|p| str_at(p, "port").parse().unwrap())
                    .collect();
                rules.push(Rule {
                    ingress,
                    peers,
                    ports,
                });
            }
        }
        Policy {
            name: str_at(doc, "metadata.name").to_owned(),
            selector: object(at(spec, "podSelector.matchLabels")),
            types: strings(spec.get("policyTypes")),
            rules,
        }
    }
}

/// The one namespace (its `kubernetes.io/metadata.name`) a rule admits, if it admits exactly
/// one namespace, as a whole, and nothing else.
fn monitoring_only(r: &Rule) -> Option<String> {
    let [peer] = r.peers.as_slice() else {
        return None;
    };
    if peer.pods.is_some() {
        return None;
    }
    let ns = peer.namespaces.as_ref()?;
    if ns.len() != 1 {
        return None;
    }
    ns.get("kubernetes.io/metadata.name")?
        .as_str()
        .map(str::to_owned)
}

/// Whether a label selector (`matchLabels`) selects pods with `labels`; empty selects all.
fn selects(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `kubectl create configmap|secret generic NAME --from-file=[KEY=]PATH …` commands in a file's
/// comments: (kind, name) → (key, path) for each file; the key defaults to the file's name.
fn created_objects(text: &str) -> BTreeMap<(String, String), Vec<(String, String)>> {
    let mut out: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for argv in commented_commands(text) {
        let Some(i) = argv.iter().position(|a| a == "create") else {
            continue;
        };
        if argv.first().map(String::as_str) != Some("kubectl") {
            continue;
        }
        let rest: Vec<&str> = argv[i + 1..]
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "generic")
            .collect();
        let (Some(kind), Some(name)) = (rest.first(), rest.get(1)) else {
            continue;
        };
        let files = rest
            .iter()
            .filter_map(|a| a.strip_prefix("--from-file="))
            .map(|f| match f.split_once('=') {
                Some((key, path)) => (key.to_owned(), path.to_owned()),
                None => (file_name(f).to_owned(), f.to_owned()),
            });
        out.entry(((*kind).to_owned(), (*name).to_owned()))
            .or_default()
            .extend(files);
    }
    out
}

// --- systemd ------------------------------------------------------------------------------

#[derive(Debug)]
struct Unit {
    name: String,
    /// (key, value) in file order, continuation lines joined.
    entries: Vec<(String, String)>,
}

impl Unit {
    fn read(path: &Path) -> Unit {
        let mut entries = Vec::new();
        let mut pending = String::new();
        for line in read(path).lines() {
            let t = line.trim();
            if pending.is_empty() && (t.is_empty() || t.starts_with('#') || t.starts_with(';')) {
                continue;
            }
            if let Some(cont) = t.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(t);
            if let Some((k, v)) = pending.split_once('=') {
                entries.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            pending.clear();
        }
        Unit {
            name: path.file_name().unwrap().to_str().unwrap().to_owned(),
            entries,
        }
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A space-separated path list, every occurrence of `key` together.
    fn paths(&self, key: &str) -> Vec<String> {
        self.all(key)
            .iter()
            .flat_map(|v| v.split_whitespace())
            // `-` makes a missing path non-fatal, `+` ignores the root directory; neither
            // changes the path.
            .map(|p| {
                p.trim_start_matches(['-', '+'])
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect()
    }
}

/// An Exec line's argv, without systemd's prefixes (`-`, `@`, `+`, `!`, `:`).
fn exec_argv(line: &str) -> Vec<String> {
    let line = line.trim_start_matches(['-', '@', '+', '!', ':']);
    shell_words(line)
}

// --- documented commands ------------------------------------------------------------------

/// Commands that start a line in the deployment files' comments, or in README code blocks:
/// `huitong …` and `kubectl …`, continuation lines joined. (origin, argv).
fn documented_commands() -> Vec<(String, Vec<String>)> {
    let root = workspace_root().join("deploy");
    let mut out = Vec::new();
    let mut files = Vec::new();
    for dir in ["examples", "kubernetes", "systemd"] {
        for ext in ["toml", "yaml", "service"] {
            files.extend(files_in(&root.join(dir), ext));
        }
    }
    files.push(root.join("Dockerfile"));
    for f in &files {
        let origin = f.strip_prefix(&root).unwrap().display().to_string();
        for argv in commented_commands(&read(f)) {
            out.push((origin.clone(), argv));
        }
    }
    // The README: lines in fenced code blocks.
    for argv in commented_commands(&fenced_as_comments(&read(&root.join("README.md")))) {
        out.push(("README.md".to_owned(), argv));
    }
    out
}

/// The lines of a Markdown file's fenced code blocks, each made a `# ` comment line, so that
/// [`commented_commands`] reads them as it reads the deployment files' comments.
fn fenced_as_comments(markdown: &str) -> String {
    let mut in_code = false;
    let mut code = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            code.push_str("# ");
            code.push_str(line);
            code.push('\n');
        }
    }
    code
}

// --- the docs ------------------------------------------------------------------------------

/// The Markdown files held to the binary: (path from the workspace root, text).
fn doc_files() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut out: Vec<(String, String)> = files_in(&root.join("docs"), "md")
        .iter()
        .map(|p| {
            (
                p.strip_prefix(&root).unwrap().display().to_string(),
                read(p),
            )
        })
        .collect();
    for f in ["README.md", "deploy/README.md"] {
        out.push((f.to_owned(), read(&root.join(f))));
    }
    out
}

/// A `huitong …` command line in the docs.
#[derive(Debug)]
struct DocCommand {
    /// `file:line`.
    origin: String,
    /// Starting with `huitong`.
    argv: Vec<String>,
    /// The `error: …` line the docs show it failing with, if any.
    refusal: Option<String>,
    /// An inline code span, which may name a command group (`huitong pki`) without a command.
    inline: bool,
}

/// Every `huitong …` command line in the docs: lines of fenced code blocks (in ```text blocks
/// only after a `$ ` prompt, since the rest is output), continuation lines joined, and inline
/// code spans in prose.
fn doc_commands() -> Vec<DocCommand> {
    let mut out = Vec::new();
    for (name, text) in doc_files() {
        let lines: Vec<&str> = text.lines().collect();
        let mut fence: Option<String> = None;
        let mut paragraph = String::new();
        let mut paragraph_line = 0;
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim();
            if let Some(info) = line.strip_prefix("```") {
                inline_commands(&name, paragraph_line, &paragraph, &mut out);
                paragraph.clear();
                fence = match fence {
                    Some(_) => None,
                    None => Some(info.trim().to_owned()),
                };
                i += 1;
                continue;
            }
            let Some(lang) = &fence else {
                if line.is_empty() {
                    inline_commands(&name, paragraph_line, &paragraph, &mut out);
                    paragraph.clear();
                } else {
                    if paragraph.is_empty() {
                        paragraph_line = i + 1;
                    }
                    paragraph.push_str(line);
                    paragraph.push(' ');
                }
                i += 1;
                continue;
            };
            let start = i;
            let mut cmd = String::new();
            let mut l = line;
            while let Some(part) = l.strip_suffix('\\') {
                cmd.push_str(part);
                cmd.push(' ');
                i += 1;
                l = lines.get(i).map_or("", |s| s.trim());
            }
            cmd.push_str(l);
            let (prompted, rest) = match cmd.strip_prefix("$ ") {
                Some(r) => (true, r),
                None => (false, cmd.as_str()),
            };
            let rest = strip_env_assignments(rest);
            let code = !["toml", "rust", "json", "yaml"].contains(&lang.as_str());
            if code && rest.starts_with("huitong ") && (prompted || lang != "text") {
                let refusal = lines
                    .get(i + 1)
                    .map(|n| n.trim())
                    .filter(|n| n.starts_with("error:"))
                    .map(str::to_owned);
                out.push(DocCommand {
                    origin: format!("{name}:{}", start + 1),
                    argv: doc_words(rest),
                    refusal,
                    inline: false,
                });
            }
            i += 1;
        }
        inline_commands(&name, paragraph_line, &paragraph, &mut out);
    }
    out
}

/// The `huitong …` code spans of one paragraph (its lines joined).
fn inline_commands(name: &str, line: usize, paragraph: &str, out: &mut Vec<DocCommand>) {
    for (i, span) in paragraph.split('`').enumerate() {
        if i % 2 == 1 && span.starts_with("huitong ") {
            out.push(DocCommand {
                origin: format!("{name}:{line} (paragraph)"),
                argv: doc_words(span),
                refusal: None,
                inline: true,
            });
        }
    }
}

/// `NAME=value NAME2=value2 rest` → `rest`.
fn strip_env_assignments(mut line: &str) -> &str {
    loop {
        let word = line.split_whitespace().next().unwrap_or("");
        let assignment = word.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        if !assignment {
            return line;
        }
        line = line.trim_start()[word.len()..].trim_start();
    }
}

/// A documented command line as the words `huitong` would get: `<a placeholder>` kept as one
/// word, cut at the first pipe, redirection, `&&`, `;` or `# comment`, and usage notation read
/// as a choice: `[--json|--csv]` → `--json`.
fn doc_words(line: &str) -> Vec<String> {
    let mut text = String::new();
    let mut in_placeholder = false;
    let chars: Vec<char> = line.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '<'
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphanumeric() || *n == '_')
        {
            in_placeholder = chars[i..].contains(&'>');
        } else if c == '>' {
            in_placeholder = false;
        }
        if in_placeholder && (c.is_whitespace() || c == '\'' || c == '"') {
            text.push('_');
        } else {
            text.push(c);
        }
    }
    let mut out = Vec::new();
    for w in shell_words(&text) {
        let cut = ["|", "||", "&&", ";", "&", "<"].contains(&w.as_str())
            || w.starts_with('>')
            || w.starts_with("2>")
            || w.starts_with('#');
        if cut {
            break;
        }
        let w = w.trim_start_matches('[').trim_end_matches(']');
        let w = w.split('|').next().unwrap_or_default();
        if !w.is_empty() {
            out.push(w.to_owned());
        }
    }
    out
}

/// Whether a documented value stands for one to fill in.
fn is_placeholder(v: &str) -> bool {
    (v.starts_with('<') && v.ends_with('>'))
        || v.contains('…')
        || v.contains("...")
        || (!v.is_empty() && v.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
}

/// A fenced ```toml block of the docs.
#[derive(Debug)]
struct TomlBlock {
    origin: String,
    text: String,
    /// Marked `<!-- fragment -->` on the line before its fence.
    fragment: bool,
}

fn doc_toml_blocks() -> Vec<TomlBlock> {
    let mut out = Vec::new();
    for (name, text) in doc_files() {
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim() != "```toml" {
                i += 1;
                continue;
            }
            let fragment = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim().starts_with("<!-- fragment"));
            let start = i + 1;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && !lines[i].trim().starts_with("```") {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            out.push(TomlBlock {
                origin: format!("{name}:{start}"),
                text: body,
                fragment,
            });
            i += 1;
        }
    }
    out
}

/// Fenced blocks marked `<!-- file: NAME -->` on the line before their fence: (`file:line`,
/// NAME, text). NAME must stay inside the directory it is written to.
fn doc_data_files() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (doc, text) in doc_files() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line
                .trim()
                .strip_prefix("<!-- file:")
                .and_then(|r| r.strip_suffix("-->"))
            else {
                continue;
            };
            let (name, origin) = (name.trim(), format!("{doc}:{}", i + 1));
            assert!(
                !name.is_empty()
                    && Path::new(name).is_relative()
                    && !name.split('/').any(|c| c == ".."),
                "{origin}: {name:?} must be a relative path inside the directory"
            );
            let fence = lines[i + 1..]
                .iter()
                .position(|l| !l.trim().is_empty())
                .map(|k| i + 1 + k)
                .filter(|&k| lines[k].trim_start().starts_with("```"));
            let Some(fence) = fence else {
                panic!("{origin}: <!-- file: {name} --> is not followed by a fenced block");
            };
            let body: String = lines[fence + 1..]
                .iter()
                .take_while(|l| !l.trim_start().starts_with("```"))
                .map(|l| format!("{l}\n"))
                .collect();
            out.push((origin, name.to_owned(), body));
        }
    }
    out
}

/// `HUITONG_…=value` anywhere in the docs: (file, name, value). Placeholder values are left out.
fn doc_env_assignments() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, text) in doc_files() {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("HUITONG_") {
            let before = rest[..at].chars().next_back();
            let tail = &rest[at..];
            rest = &tail[1..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let var_len = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let Some(after) = tail[var_len..].strip_prefix('=') else {
                continue;
            };
            let value = match after.chars().next() {
                Some(q @ ('"' | '\'')) => after[1..].split(q).next().unwrap_or_default(),
                _ => after
                    .split(|c: char| c.is_whitespace() || "`),;|".contains(c))
                    .next()
                    .unwrap_or_default(),
            };
            if !value.is_empty() && !is_placeholder(value) {
                out.push((name.clone(), tail[..var_len].to_owned(), value.to_owned()));
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`, concatenated: to see whether a variable's name is read.
fn rust_sources(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                out.push_str(&rust_sources(&p));
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&read(&p));
        }
    }
    out
}

/// `huitong` with none of the caller's `HUITONG_…` or `OTEL_…` variables, so that only what a
/// test sets is read.
fn clean_command() -> Command {
    let mut c = Command::new(huitong_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| k.starts_with("HUITONG_") || k.starts_with("OTEL_"))
        {
            c.env_remove(k);
        }
    }
    c
}

/// `s/FROM/TO/` (any delimiter) with `\.` escapes only: the literal strings.
fn sed_substitution(expr: &str) -> Option<(String, String)> {
    let rest = expr.strip_prefix('s')?;
    let delim = rest.chars().next()?;
    let parts: Vec<&str> = rest[delim.len_utf8()..].split(delim).collect();
    let [from, to, flags] = parts.as_slice() else {
        return None;
    };
    if !flags.is_empty() {
        return None;
    }
    let unescape = |s: &str| s.replace("\\.", ".");
    let literal = |s: &str| !unescape(s).contains(['\\', '*', '^', '$', '[', '&']);
    (literal(from) && literal(to)).then(|| (unescape(from), unescape(to)))
}

/// A systemd time span in seconds: `20s`, `30`, `5min`, `1min 30s`.
fn systemd_seconds(v: &str) -> Option<u64> {
    let mut total = 0;
    for part in v.split_whitespace() {
        let digits = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let n: u64 = part[..digits].parse().ok()?;
        total += n * match &part[digits..] {
            "" | "s" | "sec" => 1,
            "min" | "m" => 60,
            "h" => 3600,
            _ => return None,
        };
    }
    Some(total)
}

/// Comment lines (`# …`) that begin with `huitong ` or `kubectl `, continuations joined,
/// pipelines cut at the first `|`, `&&` or `;`.
fn commented_commands(text: &str) -> Vec<Vec<String>> {
    commented_pipelines(text)
        .into_iter()
        .map(|words| {
            let end = words
                .iter()
                .position(|w| ["|", "&&", ";"].contains(&w.as_str()))
                .unwrap_or(words.len());
            words[..end].to_vec()
        })
        .collect()
}

/// As [`commented_commands`], whole: every word of the pipeline.
fn commented_pipelines(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in text.lines() {
        let Some(c) = line.trim_start().strip_prefix('#') else {
            pending = None;
            continue;
        };
        let c = c.trim().trim_start_matches("$ ");
        let start = pending.is_some() || c.starts_with("huitong ") || c.starts_with("kubectl ");
        if !start {
            continue;
        }
        let mut cmd = pending.take().unwrap_or_default();
        match c.strip_suffix('\\') {
            Some(part) => {
                cmd.push_str(part);
                cmd.push(' ');
                pending = Some(cmd);
            }
            None => {
                cmd.push_str(c);
                out.push(shell_words(&cmd));
            }
        }
    }
    out
}

/// (dept, role) → `--host`s of each `huitong pki issue` in secrets.example.yaml.
fn documented_certificates() -> BTreeMap<(String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    for (origin, argv) in documented_commands() {
        if origin.ends_with("secrets.example.yaml")
            && argv.get(1..3) == Some(&["pki".into(), "issue".into()])
        {
            let dept = flag(&argv, "--dept").unwrap().to_owned();
            let role = flag(&argv, "--role").unwrap().to_owned();
            let hosts = argv
                .windows(2)
                .filter(|w| w[0] == "--host")
                .map(|w| w[1].clone())
                .collect();
            out.insert((dept, role), hosts);
        }
    }
    out
}

// --- the CLI, from --help ------------------------------------------------------------------

/// The subcommands and flags `huitong` accepts, read from its `--help` on first use.
#[derive(Debug, Default)]
struct Cli {
    helps: BTreeMap<Vec<String>, Help>,
}

#[derive(Debug, Clone, Default)]
struct Help {
    commands: BTreeSet<String>,
    flags: BTreeSet<String>,
    /// Flags the usage line lists outside brackets.
    required: Vec<String>,
    /// The command also runs without a subcommand (`huitong adapter --config …` beside
    /// `huitong adapter check …`): its first usage line names no command.
    subcommand_optional: bool,
    /// The usage line has a positional argument outside brackets.
    required_positional: bool,
    /// Environment variables its options read (`[env: NAME=]`).
    envs: BTreeSet<String>,
}

impl Help {
    /// Whether it refuses to run without arguments.
    fn needs_arguments(&self) -> bool {
        self.commands.is_empty() && (!self.required.is_empty() || self.required_positional)
    }
}

impl Cli {
    fn help(&mut self, path: &[String]) -> Help {
        self.helps
            .entry(path.to_vec())
            .or_insert_with(|| {
                let out = Command::new(huitong_bin())
                    .args(path)
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(out.status.success(), "huitong {path:?} --help failed");
                parse_help(&String::from_utf8_lossy(&out.stdout))
            })
            .clone()
    }

    /// Every environment variable any command reads, with the command paths that read it (the
    /// empty path: `huitong` itself, for every subcommand).
    fn env_declarations(&mut self) -> BTreeMap<String, Vec<Vec<String>>> {
        let mut out: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
        let mut todo: Vec<Vec<String>> = vec![Vec::new()];
        while let Some(path) = todo.pop() {
            let help = self.help(&path);
            for e in &help.envs {
                out.entry(e.clone()).or_default().push(path.clone());
            }
            for c in &help.commands {
                let mut sub = path.clone();
                sub.push(c.clone());
                todo.push(sub);
            }
        }
        out
    }

    /// Checks `args` (after `huitong`): subcommands exist, flags are known; with
    /// `complete`, the flags the usage line requires are all given.
    fn check(&mut self, args: &[String], complete: bool, origin: &str, problems: &mut Vec<String>) {
        let mut path: Vec<String> = Vec::new();
        let mut rest = args;
        let mut help = self.help(&path);
        while !help.commands.is_empty() {
            let Some(sub) = rest.first() else {
                problems.push(format!(
                    "{origin}: `huitong {}` lacks a subcommand",
                    path.join(" ")
                ));
                return;
            };
            if help.subcommand_optional && sub.starts_with('-') {
                break;
            }
            if sub == "--help" || sub == "-h" {
                return;
            }
            if !help.commands.contains(sub) {
                problems.push(format!(
                    "{origin}: `huitong {}` has no subcommand {sub:?} (it has {:?}); if this \
                     comment line is prose, reword it so that it does not start with `huitong`",
                    path.join(" "),
                    help.commands
                ));
                return;
            }
            path.push(sub.clone());
            rest = &rest[1..];
            help = self.help(&path);
        }
        for a in rest.iter().filter(|a| a.starts_with('-') && a.len() > 1) {
            let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
            if !help.flags.contains(name) {
                problems.push(format!(
                    "{origin}: `huitong {}` has no flag {name} (it has {:?})",
                    path.join(" "),
                    help.flags
                ));
            }
        }
        if complete {
            for r in &help.required {
                if !rest
                    .iter()
                    .any(|a| a == r || a.starts_with(&format!("{r}=")))
                {
                    problems.push(format!("{origin}: `huitong {}` needs {r}", path.join(" ")));
                }
            }
        }
    }
}

fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in flat.split("[env: ").skip(1) {
        if let Some(name) = part.split(['=', ']']).next() {
            help.envs.insert(name.to_owned());
        }
    }
    let mut section = "";
    for line in text.lines() {
        if let Some(usage) = line.strip_prefix("Usage: ") {
            help.subcommand_optional = !usage.contains("COMMAND");
            let mut depth = 0i32;
            for w in usage.split_whitespace() {
                if depth == 0 && w.starts_with("--") {
                    help.required.push(w.to_owned());
                }
                if depth == 0 && w.starts_with('<') && w != "<COMMAND>" {
                    help.required_positional = true;
                }
                depth += w.matches(['[', '(']).count() as i32;
                depth -= w.matches([']', ')']).count() as i32;
            }
            continue;
        }
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
            continue;
        }
        let t = line.trim();
        match section {
            "Commands" => {
                if let Some(name) = t.split_whitespace().next()
                    && name != "help"
                {
                    help.commands.insert(name.to_owned());
                }
            }
            // "Options", or a heading of the command's own (`bench load` groups its flags).
            "Arguments" => {}
            _ if t.starts_with('-') => {
                for w in t.split_whitespace() {
                    let w = w.trim_end_matches(',');
                    if !w.starts_with('-') {
                        break;
                    }
                    help.flags.insert(w.to_owned());
                }
            }
            _ => {}
        }
    }
    help
}

fn is_huitong(arg0: &str) -> bool {
    Path::new(arg0).file_name().and_then(|n| n.to_str()) == Some("huitong")
}

/// The value after `name` in an argv (`--name value` or `--name=value`).
fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            argv.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(name).and_then(|r| r.strip_prefix('='))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// A YAML subset: what the manifests here use
// ---------------------------------------------------------------------------------------------

/// Parses `---`-separated documents into JSON values. Scalars stay strings (`7400` is "7400").
/// Handles block mappings and sequences (also `- key: value` items), one-line flow lists and
/// `{}`, quoted scalars, `|` block scalars and comments; anything else fails loudly.
fn yaml_documents(text: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut lines: Vec<YamlLine> = Vec::new();
    let raw: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < raw.len() {
        let line = raw[i];
        let no = i + 1;
        i += 1;
        if line.trim_end() == "---" {
            docs.push(std::mem::take(&mut lines));
            continue;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = strip_yaml_comment(t);
        let mut block = None;
        if text.ends_with(" |") || text.ends_with(" |-") || text == "- |" {
            // A literal block: every following line indented deeper (or blank), dedented.
            let mut body: Vec<&str> = Vec::new();
            while i < raw.len()
                && (raw[i].trim().is_empty() || raw[i].len() - raw[i].trim_start().len() > indent)
            {
                body.push(raw[i]);
                i += 1;
            }
            let cut = body
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            let mut s: String = body
                .iter()
                .map(|l| format!("{}\n", l.get(cut..).unwrap_or("")))
                .collect();
            if text.ends_with('-') {
                s = s.trim_end_matches('\n').to_owned();
            }
            block = Some(s);
        }
        lines.push(YamlLine {
            indent,
            text,
            block,
            no,
        });
    }
    docs.push(lines);
    docs.into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut p = YamlParser { lines: d, i: 0 };
            let v = p.node();
            assert!(
                p.i == p.lines.len(),
                "YAML line {}: unexpected indentation",
                p.lines[p.i].no
            );
            v
        })
        .collect()
}

#[derive(Debug, Clone)]
struct YamlLine {
    indent: usize,
    text: String,
    block: Option<String>,
    /// 1-based line number, for errors.
    no: usize,
}

#[derive(Debug)]
struct YamlParser {
    lines: Vec<YamlLine>,
    i: usize,
}

impl YamlParser {
    fn node(&mut self) -> Value {
        let l = &self.lines[self.i];
        let indent = l.indent;
        if is_item(&l.text) {
            self.sequence(indent)
        } else {
            self.mapping(indent)
        }
    }

    /// The value of a key or item with nothing after it: a nested block, or null.
    fn nested(&mut self, indent: usize) -> Value {
        match self.lines.get(self.i) {
            Some(n) if n.indent > indent || (n.indent == indent && is_item(&n.text)) => self.node(),
            _ => Value::Null,
        }
    }

    fn mapping(&mut self, indent: usize) -> Value {
        let mut map = Map::new();
        while let Some(l) = self.lines.get(self.i).cloned() {
            if l.indent != indent || is_item(&l.text) {
                break;
            }
            self.i += 1;
            let (key, rest) = split_key(&l.text)
                .unwrap_or_else(|| panic!("YAML line {}: expected `key: value`", l.no));
            let value = match (&l.block, rest.is_empty()) {
                (Some(b), _) => Value::String(b.clone()),
                (None, true) => self.nested(indent),
                (None, false) => yaml_scalar(rest, l.no),
            };
            assert!(
                map.insert(key.to_owned(), value).is_none(),
                "YAML line {}: {key} twice",
                l.no
            );
        }
        Value::Object(map)
    }

    fn sequence(&mut self, indent: usize) -> Value {
        let mut items = Vec::new();
        while let Some(l) = self.lines.get(self.i).cloned() {
            if l.indent != indent || !is_item(&l.text) {
                break;
            }
            let rest = l.text[1..].trim_start();
            if rest.is_empty() {
                self.i += 1;
                items.push(self.nested(indent));
            } else if split_key(rest).is_some() {
                // `- key: value` starts a mapping whose keys line up with `key`.
                let offset = l.text.len() - rest.len();
                self.lines[self.i] = YamlLine {
                    indent: indent + offset,
                    text: rest.to_owned(),
                    ..l
                };
                items.push(self.mapping(indent + offset));
            } else {
                self.i += 1;
                items.push(match &l.block {
                    Some(b) => Value::String(b.clone()),
                    None => yaml_scalar(rest, l.no),
                });
            }
        }
        Value::Array(items)
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key: rest` or `key:`; keys here are plain words (no quotes, no spaces).
fn split_key(text: &str) -> Option<(&str, &str)> {
    let (key, rest) = match text.split_once(": ") {
        Some((k, r)) => (k, r.trim()),
        None => (text.strip_suffix(':')?, ""),
    };
    let plain = !key.is_empty()
        && !key.contains(char::is_whitespace)
        && !key.starts_with(['"', '\'', '[', '{', '-']);
    plain.then_some((key, rest))
}

fn yaml_scalar(text: &str, no: usize) -> Value {
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .unwrap_or_else(|| panic!("YAML line {no}: a flow list must end on its line"));
        return Value::Array(
            inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| yaml_scalar(s, no))
                .collect(),
        );
    }
    if text == "{}" {
        return Value::Object(Map::new());
    }
    assert!(
        !text.starts_with('{') && !text.starts_with(['&', '*', '!', '>']),
        "YAML line {no}: {text:?} is beyond the subset read here"
    );
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .unwrap_or_else(|| panic!("YAML line {no}: open quote"));
        return s(&inner.replace("\\\"", "\"").replace("\\\\", "\\"));
    }
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .unwrap_or_else(|| panic!("YAML line {no}: open quote"));
        return s(&inner.replace("''", "'"));
    }
    s(text)
}

/// Drops a ` # comment` that is outside quotes.
fn strip_yaml_comment(t: &str) -> String {
    let mut quote = None;
    let mut prev = ' ';
    for (i, ch) in t.char_indices() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev == ' ' => return t[..i].trim_end().to_owned(),
            _ => {}
        }
        prev = ch;
    }
    t.to_owned()
}

// --- JSON navigation ----------------------------------------------------------------------

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// The value at a dotted path.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or_default()
}

fn list(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    list(v)
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn object(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

// --- small helpers ------------------------------------------------------------------------

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files in `dir` ending in `.ext`, sorted.
fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// Copies `from` into `to` recursively, passing `.toml` files through `edit`.
fn copy_tree(from: &Path, to: &Path, edit: &dyn Fn(&str) -> String) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest, edit);
        } else if p.extension().is_some_and(|x| x == "toml") {
            std::fs::write(&dest, edit(&read(&p))).unwrap();
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `<dir>/<dept>-<role>.pem` → (dept, role).
fn cert_stem(path: &str) -> (String, String) {
    let stem = file_name(path).trim_end_matches(".pem");
    let (dept, role) = stem.rsplit_once('-').unwrap_or((stem, ""));
    (dept.to_owned(), role.to_owned())
}

/// Whether `path` is `dir` or inside it.
fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/"))
}

/// `https://host:port`, `host:port` or `[v6]:port` → (host, port).
fn host_port(addr: &str) -> (&str, u16) {
    let hp = addr
        .split_once("://")
        .map_or(addr, |(_, r)| r)
        .trim_end_matches('/');
    let (host, port) = hp
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{addr} has no port"));
    (
        host.trim_start_matches('[').trim_end_matches(']'),
        port.parse().unwrap_or_else(|_| panic!("{addr}: bad port")),
    )
}

/// Splits a command line into words: whitespace-separated, with '…' and "…" quoting.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The pid of the process whose command line has `arg` as one of its arguments.
fn pid_running_with(arg: &Path) -> u32 {
    let want = arg.to_str().unwrap();
    let found: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == want.as_bytes()))
        })
        .collect();
    assert_eq!(found.len(), 1, "processes running with {want}: {found:?}");
    found[0]
}

/// Runs `huitong <args>`, expects success, returns stdout.
fn run_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let out = Command::new(huitong_bin())
        .args(args)
        .env("HUITONG_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "huitong {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Monitoring: deploy/monitoring against promtool, the metrics table and the runbook
// ---------------------------------------------------------------------------------------------

fn monitoring_dir() -> PathBuf {
    workspace_root().join("deploy").join("monitoring")
}

/// promtool from `HUITONG_PROMTOOL` or `PATH`. Absent, the test is skipped with a note, unless
/// CI made it mandatory (`HUITONG_REQUIRE_PROMTOOL=1`).
fn promtool(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HUITONG_PROMTOOL") {
        let p = PathBuf::from(p);
        // Set explicitly, it must be there: a typo should not turn into a skipped test.
        assert!(
            p.is_file(),
            "HUITONG_PROMTOOL={} is not a file",
            p.display()
        );
        return Some(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !huitong_tests::required("PROMTOOL"),
            "HUITONG_REQUIRE_PROMTOOL=1 but promtool is neither in HUITONG_PROMTOOL nor on PATH"
        );
        eprintln!(
            "SKIPPED {test}: promtool not found. Install it from Debian's `prometheus` package \
             (`apt-get download prometheus && dpkg -x prometheus_*.deb DIR`, no daemon needed) \
             and set HUITONG_PROMTOOL=DIR/usr/bin/promtool"
        );
    }
    found
}

fn run_promtool(promtool: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {} (in {}) failed:\n{}{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every PromQL query of the Grafana dashboard, in panel order.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        for t in list(v.get("targets")) {
            if let Some(e) = t.get("expr").and_then(Value::as_str) {
                out.push(e.to_owned());
            }
        }
        for p in list(v.get("panels")) {
            walk(p, out);
        }
    }
    let dash: Value =
        serde_json::from_str(&read(&monitoring_dir().join("grafana-huitong.json"))).unwrap();
    let mut out = Vec::new();
    walk(&dash, &mut out);
    out
}

#[test]
fn the_alert_rules_pass_promtool() {
    let Some(promtool) = promtool("the_alert_rules_pass_promtool") else {
        return;
    };
    let dir = monitoring_dir();
    run_promtool(&promtool, &dir, &["check", "rules", "huitong-rules.yml"]);
    run_promtool(
        &promtool,
        &dir,
        &["test", "rules", "huitong-rules.test.yml"],
    );
    // The host scrape config, which also loads the rules file it names.
    run_promtool(&promtool, &dir, &["check", "config", "prometheus.yml"]);

    // The dashboard's queries parse too: as recording rules, with Grafana's variables replaced
    // by what Grafana would put there.
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "the dashboard has only {} queries; is it read right?",
        queries.len()
    );
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q
            .replace("$__rate_interval", "2m")
            .replace("$__range", "6h")
            .replace("$instance", ".+");
        assert!(!q.contains('$'), "a Grafana variable left in {q}");
        // A JSON string is a YAML double-quoted scalar.
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        ));
    }
    let tmp = TempDir::new("dashboard-queries");
    std::fs::write(tmp.path().join("dashboard.yml"), rules).unwrap();
    run_promtool(&promtool, tmp.path(), &["check", "rules", "dashboard.yml"]);
}

/// The metric names (`huitong_…`, `process_…`) in `text`, histogram series reduced to the
/// histogram's name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["huitong_", "process_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix) {
            let start = from + at;
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .map_or(text.len(), |n| start + n);
            from = end;
            // Part of a longer word (say `bad_process_x`) is not a name.
            if text[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                continue;
            }
            let mut name = &text[start..end];
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    name = base;
                    break;
                }
            }
            names.insert(name.to_owned());
        }
    }
    names
}

/// The first column of the table under `### Metrics` in docs/operations.md.
fn documented_metrics() -> BTreeSet<String> {
    let doc = read(&workspace_root().join("docs").join("operations.md"));
    let section = doc
        .split_once("\n### Metrics\n")
        .expect("docs/operations.md has no ### Metrics section")
        .1;
    let section = section.split("\n#").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[test]
fn every_metric_the_rules_and_dashboard_name_is_documented() {
    let documented = documented_metrics();
    assert!(
        documented.len() >= 25,
        "only {} metrics found in docs/operations.md's ### Metrics table: {documented:?}",
        documented.len()
    );
    let mut problems = Vec::new();
    for file in ["huitong-rules.yml", "grafana-huitong.json"] {
        let used = metric_names(&read(&monitoring_dir().join(file)));
        assert!(
            used.len() >= 10,
            "only {} metric names found in {file}: {used:?}",
            used.len()
        );
        for name in used.difference(&documented) {
            problems.push(format!(
                "deploy/monitoring/{file} uses {name}, which docs/operations.md (### Metrics) does not list"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_alert_has_labels_a_runbook_section_and_a_firing_test() {
    let rules = read(&monitoring_dir().join("huitong-rules.yml"));
    let tests = read(&monitoring_dir().join("huitong-rules.test.yml"));
    let runbook = read(&workspace_root().join("docs").join("runbook.md"));
    let sections: BTreeSet<&str> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect();
    // Each `- alert:` up to the next one (or the next group) is one rule.
    let mut alerts = BTreeSet::new();
    let mut problems = Vec::new();
    for chunk in rules.split("- alert: ").skip(1) {
        let chunk = chunk.split("\n  - name:").next().unwrap();
        let name = chunk.lines().next().unwrap().trim().to_owned();
        let has = |needle: &str| chunk.lines().any(|l| l.trim_start().starts_with(needle));
        if !(has("severity: warning") || has("severity: critical")) {
            problems.push(format!("{name}: no severity warning or critical"));
        }
        for key in ["summary:", "description:"] {
            if !has(key) {
                problems.push(format!("{name}: no {key} annotation"));
            }
        }
        let url = format!("runbook_url: \"docs/runbook.md#{}\"", name.to_lowercase());
        if !has(&url) {
            problems.push(format!("{name}: no {url}"));
        }
        if !sections.contains(name.as_str()) {
            problems.push(format!(
                "{name}: docs/runbook.md has no `## {name}` section"
            ));
        }
        alerts.insert(name);
    }
    assert!(
        alerts.len() >= 12,
        "only {} alerts found: {alerts:?}",
        alerts.len()
    );
    for s in &sections {
        if !alerts.contains(*s) {
            problems.push(format!(
                "docs/runbook.md: `## {s}` is not an alert any more"
            ));
        }
    }
    // A test case that expects the alert to fire: its `alertname:` with an `exp_labels` before
    // the next case.
    let fired: BTreeSet<&str> = tests
        .split("- eval_time:")
        .filter(|case| case.contains("exp_labels:"))
        .filter_map(|case| {
            case.lines()
                .find_map(|l| l.trim().strip_prefix("alertname: "))
        })
        .collect();
    for a in &alerts {
        if !fired.contains(a.as_str()) {
            problems.push(format!("{a}: huitong-rules.test.yml never shows it firing"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
