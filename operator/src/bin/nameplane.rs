//! `nameplane`: the command-line tool for people moving to, and running, nameplane.
//!
//! `nameplane import` turns a CoreDNS Corefile (or a kube-dns ConfigMap) into the
//! equivalent nameplane objects, as YAML on stdout for `kubectl apply -f -`; everything it
//! cannot carry over is listed on stderr as `<file>:<line>: <directive>: <reason>`. Exit
//! status: 0 everything carried over (notes aside), 2 something not carried over, 1 the input
//! could not be read. See the README, "Coming from CoreDNS".

use clap::{Parser, Subcommand};
use nameplane_operator::import;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// nameplane command-line tool.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turn a CoreDNS Corefile or kube-dns ConfigMap into DNSServer, StubDomain, DNSZone
    /// and RewriteRule objects (YAML on stdout). Exit status: 0 complete, 2 something not
    /// carried over (listed on stderr), 1 unreadable input.
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["corefile", "coredns_configmap", "kube_dns_configmap"])))]
struct ImportArgs {
    /// A Corefile (`-` for stdin).
    #[arg(long)]
    corefile: Option<PathBuf>,
    /// The `coredns` ConfigMap as YAML (`kubectl -n kube-system get cm coredns -o yaml`):
    /// its Corefile, and the files beside it such as k3s's NodeHosts.
    #[arg(long)]
    coredns_configmap: Option<PathBuf>,
    /// A `coredns-custom` ConfigMap as YAML (k3s, AKS): the files the Corefile imports from
    /// /etc/coredns/custom/. May be given more than once.
    #[arg(long)]
    custom_configmap: Vec<PathBuf>,
    /// A kube-dns ConfigMap as YAML (`stubDomains`, `upstreamNameservers`).
    #[arg(long)]
    kube_dns_configmap: Option<PathBuf>,
    /// Namespace of the objects written.
    #[arg(long, default_value = "nameplane-system")]
    namespace: String,
    /// Name of the DNSServer written.
    #[arg(long, default_value = "cluster-dns")]
    name: String,
}

fn read(path: &PathBuf) -> Result<(String, String), String> {
    let name = path.display().to_string();
    let text = if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("stdin: {e}"))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?
    };
    Ok((name, text))
}

fn import(args: ImportArgs) -> Result<import::RunOutput, String> {
    let inputs = import::Inputs {
        corefile: args.corefile.as_ref().map(read).transpose()?,
        coredns_configmap: args.coredns_configmap.as_ref().map(read).transpose()?,
        custom_configmaps: args
            .custom_configmap
            .iter()
            .map(read)
            .collect::<Result<_, _>>()?,
        kube_dns_configmap: args.kube_dns_configmap.as_ref().map(read).transpose()?,
    };
    let options = import::Options {
        namespace: args.namespace,
        name: args.name,
        ..Default::default()
    };
    Ok(import::run(&inputs, &options, &|name| {
        std::env::var(name).ok()
    }))
}

fn main() -> ExitCode {
    // Usage errors exit 1 (clap's own 2 means "not carried over" here); help and version 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match cli.command {
        Command::Import(args) => match import(args) {
            Ok(output) => {
                print!("{}", output.stdout);
                eprint!("{}", output.stderr);
                ExitCode::from(output.exit_status as u8)
            }
            Err(e) => {
                eprintln!("nameplane import: {e}");
                ExitCode::from(1)
            }
        },
    }
}
