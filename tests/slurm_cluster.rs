//! `abcond slurm` on a real Slurm: a one-node cluster on localhost (munged,
//! slurmctld and slurmd of Debian's `munge` and `slurm-wlm`, started by the
//! test with a private key, config, state and ports in a temporary directory).
//!
//! - a 2×2 sweep (4 tiny MLP runs on an IDX fixture) is submitted with the
//!   generated `submit.sh`: every array task ends COMPLETED with exit 0, each
//!   run is trained and probed, the analysis job starts only after the last
//!   task ended (`afterany`), skips the finished runs, and the experiment
//!   tables (`runs.parquet`, `analysis/*.parquet`) hold exactly the 4 runs;
//! - requeue: a longer single run is `scontrol requeue`d while it trains; the
//!   requeued task resumes from its checkpoint (a second session starting at a
//!   step > 0), its log keeps both attempts, steps.parquet holds every step
//!   exactly once, the steps and the final iterate are bit-identical to an
//!   uninterrupted local run, and the analysis job waits for the requeued task;
//! - the sweep is submitted with `--throttle 1` (`--array=0-3%1`): no two of
//!   its runs train at the same time (their sessions' clocks in run.yaml);
//! - frozen config: the source config is overwritten with text that is no
//!   config before the sweep is submitted; the tasks and the analysis run the
//!   sealed copy `slurm/config.yaml` and complete with the original run ids;
//! - time limit: a run longer than its 1-minute time limit is submitted with
//!   `--signal-seconds 50`; Slurm's SIGUSR1 reaches abcond through run.sbatch,
//!   abcond writes a checkpoint at the step it is on and exits 75, the task
//!   requeues itself, and each attempt resumes where the last one stopped
//!   (no periodic checkpoint exists: `checkpoint_every` exceeds the run),
//!   until a last attempt completes: no attempt ends TIMEOUT, every step is
//!   in steps.parquet exactly once.
//!
//! Where slurmctld/slurmd/sbatch/munged are missing, the test installs them
//! with apt-get (as root, or `sudo -n`); where that is impossible it prints
//! `SKIPPED: …` with the reason and passes. Once the packages are there, a
//! cluster that does not come up is a failure, reported with the daemons' logs.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Commands the test runs; all come with the two Debian packages.
const TOOLS: &[&str] = &[
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
];

/// `name` on PATH or in the sbin directories (a non-root PATH often lacks them).
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn missing_tools() -> Vec<&'static str> {
    TOOLS
        .iter()
        .copied()
        .filter(|t| tool(t).is_none())
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs slurm-wlm and munge when a tool is missing (like `./dev test`'s
/// setup_slurm); Err(why not) when they remain missing.
fn ensure_slurm() -> Result<(), String> {
    if missing_tools().is_empty() {
        return Ok(());
    }
    let Some(apt) = tool("apt-get") else {
        return Err(format!(
            "{} are missing and there is no apt-get to install slurm-wlm and munge",
            missing_tools().join(", ")
        ));
    };
    let sudo = !is_root();
    if sudo && tool("sudo").is_none() {
        return Err(format!(
            "{} are missing, and installing slurm-wlm and munge needs root (not root, no sudo)",
            missing_tools().join(", ")
        ));
    }
    let apt_cmd = |args: &[&str]| {
        let mut c = if sudo {
            let mut c = Command::new("sudo");
            c.arg("-n").arg(&apt);
            c
        } else {
            Command::new(&apt)
        };
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c.output()
    };
    let install = [
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "slurm-wlm",
        "munge",
    ];
    eprintln!("slurm_cluster: installing slurm-wlm and munge with apt-get");
    let mut why = match apt_cmd(&install) {
        Ok(o) if o.status.success() => String::new(),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    if !why.is_empty() {
        let _ = apt_cmd(&["update", "-q"]);
        why = match apt_cmd(&install) {
            Ok(o) if o.status.success() => String::new(),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
    }
    let still = missing_tools();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} are missing and `{}apt-get install slurm-wlm munge` failed: {}",
            still.join(", "),
            if sudo { "sudo -n " } else { "" },
            if why.is_empty() { "(no message)" } else { &why }
        ))
    }
}

/// A free TCP port on localhost (the listener is dropped by the caller).
fn free_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    let p = l.local_addr().unwrap().port();
    (l, p)
}

fn run_ok(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The last `n` lines of a file, for failure reports.
fn tail(p: &Path, n: usize) -> String {
    match std::fs::read_to_string(p) {
        Ok(t) => {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({e})"),
    }
}

/// A running one-node cluster; Drop cancels its jobs and stops the daemons
/// (also when the test panics). A watchdog shell stops them too if the test
/// process is killed before Drop runs.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
    watchdog: Option<Child>,
    /// Directories whose `*.out` job logs go into failure reports.
    job_logs: Vec<PathBuf>,
    /// SlurmUser and the owner of the jobs.
    user: String,
}

impl Cluster {
    fn start() -> Cluster {
        // Under /tmp, not $TMPDIR: a Unix socket path may not exceed 107 bytes,
        // and munged wants the socket's directories searchable by everyone.
        let dir = Path::new("/tmp").join(format!("abcond-slurm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let keys = dir.join("key");
        for d in [&dir, &dir.join("state"), &dir.join("spool"), &keys] {
            std::fs::create_dir_all(d).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        // munged insists: socket directory searchable by all, key private.
        mode(&dir, 0o755);
        mode(&keys, 0o700);
        let key: Vec<u8> = {
            use std::io::Read;
            let mut b = vec![0u8; 1024];
            std::fs::File::open("/dev/urandom")
                .unwrap()
                .read_exact(&mut b)
                .unwrap();
            b
        };
        std::fs::write(keys.join("munge.key"), key).unwrap();
        mode(&keys.join("munge.key"), 0o600);
        let socket = dir.join("munge.socket");
        let conf = dir.join("slurm.conf");
        let user = run_ok(Command::new("id").arg("-un")).trim().to_string();
        let mut c = Cluster {
            dir: dir.clone(),
            conf: conf.clone(),
            daemons: Vec::new(),
            watchdog: None,
            job_logs: Vec::new(),
            user: user.clone(),
        };

        c.spawn(
            "munged",
            Command::new(tool("munged").unwrap()).args([
                "--foreground".to_string(),
                format!("--socket={}", socket.display()),
                format!("--key-file={}", keys.join("munge.key").display()),
                format!("--seed-file={}", keys.join("munge.seed").display()),
                format!("--pid-file={}", dir.join("munged.pid").display()),
            ]),
        );
        c.wait_for("munged's socket", 20, |_| socket.exists());

        // The node as slurmd sees it (name, CPUs, sockets, memory), so the
        // controller accepts its registration.
        let probe = run_ok(Command::new(tool("slurmd").unwrap()).arg("-C"));
        let node_line = probe
            .lines()
            .find(|l| l.starts_with("NodeName="))
            .unwrap_or_else(|| panic!("`slurmd -C` printed no NodeName line:\n{probe}"));
        let node = node_line
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("NodeName=")
            .to_string();
        let (l1, ctld_port) = free_port();
        let (l2, slurmd_port) = free_port();
        drop((l1, l2));
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "# Written by tests/slurm_cluster.rs: a one-node cluster on localhost, no cgroups, no accounting.
ClusterName=abcondtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket}
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/builtin
MinJobAge=600
KillWait=5
GresTypes=gpu
{} Gres=gpu:2 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
",
                node_line
                    .split_whitespace()
                    .filter(|w| !w.starts_with("UpTime="))
                    .collect::<Vec<_>>()
                    .join(" "),
                socket = socket.display(),
            ),
        )
        .unwrap();
        // Two stand-in GPUs (/dev/null and /dev/zero as their device files):
        // --gpus-per-task is scheduled like on a GPU cluster while the runs use
        // the CPU.
        std::fs::write(
            dir.join("gres.conf"),
            format!("AutoDetect=off\nNodeName={node} Name=gpu File=/dev/null\nNodeName={node} Name=gpu File=/dev/zero\n"),
        )
        .unwrap();
        let f = conf.display().to_string();
        c.spawn(
            "slurmctld",
            Command::new(tool("slurmctld").unwrap()).args(["-D", "-i", "-f", &f]),
        );
        c.spawn(
            "slurmd",
            Command::new(tool("slurmd").unwrap()).args(["-D", "-f", &f]),
        );
        c.watch();
        c.wait_for("node idle in sinfo", 60, |c| {
            c.slurm("sinfo")
                .args(["-h", "-o", "%t"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        c
    }

    /// Starts a daemon in the foreground (stdout/stderr to `<name>.stdout`).
    fn spawn(&mut self, name: &'static str, cmd: &mut Command) {
        let out = std::fs::File::create(self.dir.join(format!("{name}.stdout"))).unwrap();
        let child = cmd
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.daemons.push((name, child));
    }

    /// A shell that stops the daemons once this test process is gone (a
    /// SIGKILLed test runs no Drop).
    fn watch(&mut self) {
        let pids: Vec<String> = self
            .daemons
            .iter()
            .map(|(_, c)| c.id().to_string())
            .collect();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 2; done; kill {p} 2>/dev/null; sleep 5; kill -9 {p} 2>/dev/null; rm -rf {dir}",
            me = std::process::id(),
            p = pids.join(" "),
            dir = self.dir.display()
        );
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    /// A Slurm client command for this cluster.
    fn slurm(&self, name: &str) -> Command {
        let mut c = Command::new(tool(name).unwrap_or_else(|| PathBuf::from(name)));
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Panics with `what`, the daemons' logs and the job logs.
    fn fail(&mut self, what: &str) -> ! {
        let mut s = format!("{what}\n");
        for (name, child) in &mut self.daemons {
            if let Ok(Some(st)) = child.try_wait() {
                s.push_str(&format!("!! {name} exited: {st}\n"));
            }
        }
        for f in [
            "munged.stdout",
            "slurmctld.stdout",
            "slurmctld.log",
            "slurmd.stdout",
            "slurmd.log",
            "jobcomp.txt",
        ] {
            s.push_str(&format!("==== {f}\n{}\n", tail(&self.dir.join(f), 40)));
        }
        s.push_str(&format!("==== slurm.conf\n{}\n", tail(&self.conf, 60)));
        if let Ok(o) = self.slurm("squeue").args(["-a", "-l"]).output() {
            s.push_str(&format!(
                "==== squeue\n{}\n",
                String::from_utf8_lossy(&o.stdout)
            ));
        }
        for d in &self.job_logs {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "out") {
                    s.push_str(&format!("==== {}\n{}\n", p.display(), tail(&p, 30)));
                }
            }
        }
        panic!("{s}");
    }

    /// Polls `ready` every 100 ms; fails with the logs after `secs`.
    fn wait_for(&mut self, what: &str, secs: u64, mut ready: impl FnMut(&Cluster) -> bool) {
        let t0 = Instant::now();
        loop {
            if ready(self) {
                return;
            }
            let dead = self.daemons.iter_mut().find_map(|(n, c)| {
                c.try_wait()
                    .ok()
                    .flatten()
                    .map(|st| format!("{n} exited ({st})"))
            });
            if let Some(d) = dead {
                self.fail(&format!("waiting for {what}: {d}"));
            }
            if t0.elapsed() > Duration::from_secs(secs) {
                self.fail(&format!("waiting for {what}: not after {secs} s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until none of `jobs` is pending, running or completing.
    fn wait_jobs(&mut self, jobs: &[&str], secs: u64) {
        let list = jobs.join(",");
        self.wait_for(&format!("jobs {list} to end"), secs, |c| {
            c.slurm("squeue")
                .args(["-h", "-j", &list, "-o", "%i %t"])
                .output()
                .is_ok_and(|o| {
                    o.status.success() && o.stdout.iter().all(|b| b.is_ascii_whitespace())
                })
        });
    }

    /// Runs submit.sh; returns (array job id, analysis job id).
    fn submit(&mut self, sdir: &Path) -> (String, String) {
        self.job_logs.push(sdir.to_path_buf());
        // From `/`: the scripts must not depend on the submitting directory.
        let o = Command::new("bash")
            .arg(sdir.join("submit.sh"))
            .current_dir("/")
            .env("SLURM_CONF", &self.conf)
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&o.stdout).to_string();
        if !o.status.success() {
            self.fail(&format!(
                "submit.sh failed ({}):\n{said}{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        let id = |prefix: &str| {
            said.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        };
        match (id("submitted array job "), id("submitted analysis job ")) {
            (Some(a), Some(b)) => (a, b),
            _ => self.fail(&format!("submit.sh did not print both job ids:\n{said}")),
        }
    }

    /// The job completion records (jobcomp/filetxt), one key → value map each.
    fn records(&self) -> Vec<BTreeMap<String, String>> {
        std::fs::read_to_string(self.dir.join("jobcomp.txt"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Jobs still queued or running belong to this cluster only.
            let _ = self
                .slurm("scancel")
                .arg(format!("--user={}", self.user))
                .output();
            std::thread::sleep(Duration::from_secs(2));
        }
        // SIGTERM first (slurmctld saves its state and exits), SIGKILL after 10 s.
        for (_, child) in self.daemons.iter().rev() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        let t0 = Instant::now();
        for (_, child) in self.daemons.iter_mut().rev() {
            while child.try_wait().ok().flatten().is_none()
                && t0.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(w) = &mut self.watchdog {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last completion record of each array task of `array` (task → record).
fn task_records(
    recs: &[BTreeMap<String, String>],
    array: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    recs.iter()
        .filter(|r| r.get("ArrayJobId").map(String::as_str) == Some(array))
        .map(|r| (r["ArrayTaskId"].clone(), r.clone()))
        .collect()
}

/// A record of a job that ended COMPLETED with exit code 0 (and no signal).
fn done(r: &BTreeMap<String, String>) -> bool {
    r.get("JobState").map(String::as_str) == Some("COMPLETED")
        && r.get("ExitCode").map(String::as_str) == Some("0:0")
}

/// How long a requeued task stays pending before the test starts it.
const REQUEUE_PAUSE: Duration = Duration::from_secs(3);

#[test]
fn sweep_and_requeue_on_a_real_slurm() {
    let t0 = Instant::now();
    if let Err(why) = ensure_slurm() {
        eprintln!("SKIPPED: slurm_cluster: no real-Slurm test because {why}");
        return;
    }
    let installed = t0.elapsed();
    let mut cluster = Cluster::start();
    let up = t0.elapsed();

    let dir = scratch("slurm-cluster");
    let data = dir.join("data");
    write_idx_fixture(&data, 256);
    let base = format!(
        "seed: 0\ndevice: cpu\ndata: {{dataset: fashion-mnist, path: {}}}\noptim: {{name: sgd, lr: 0.1}}\nprobe: {{extra_batches: 1}}\nanalysis: {{plots: false}}\n",
        data.display()
    );

    sweep_array(&mut cluster, &dir, &base);
    let swept = t0.elapsed();
    let resumed_at = requeue_mid_training(&mut cluster, &dir, &base);
    let requeued = t0.elapsed();
    let starts = time_limit_resumes(&mut cluster, &dir, &base);
    eprintln!(
        "slurm_cluster: install check {:.1} s, cluster up {:.1} s, sweep of 4 + analysis {:.1} s, requeued run {:.1} s (resumed at step {resumed_at}), time-limited run {:.1} s (sessions from steps {starts:?}), total {:.1} s",
        installed.as_secs_f64(),
        (up - installed).as_secs_f64(),
        (swept - up).as_secs_f64(),
        (requeued - swept).as_secs_f64(),
        (t0.elapsed() - requeued).as_secs_f64(),
        t0.elapsed().as_secs_f64(),
    );
}

/// A 2×2 sweep as a job array, then the dependent analysis.
fn sweep_array(cluster: &mut Cluster, dir: &Path, base: &str) {
    let cfg = write_config(
        dir,
        "sweep.yaml",
        &format!("experiment: onslurm\n{base}model: {{preset: mlp}}\ntrain: {{batch_size: 32, steps: 40}}\nsnapshots: {{every: 10}}\nsweep:\n  model.width: [8, 16]\n  seed: [0, 1]\n"),
    );
    let sweep = abcond::experiment::sweep::Sweep::load(&cfg, &[])
        .unwrap()
        .unwrap();
    let ids: Vec<String> = sweep.tasks.iter().map(|t| t.run_id()).collect();
    // Every resource option: sbatch and the scheduler check them.
    ok(&abcond(
        dir,
        &[
            "--out",
            "res",
            "slurm",
            "sweep.yaml",
            "--partition",
            "debug",
            "--time",
            "10:00",
            "--mem",
            "200M",
            "--cpus-per-task",
            "1",
            "--account",
            "abcond",
            "--gpus-per-task",
            "1",
            "--throttle",
            "1",
        ],
    ));
    let sdir = dir.join("res/onslurm/slurm");
    // The jobs run the frozen copy beside the scripts: the source may change
    // (or break) after `abcond slurm` without changing what runs.
    std::fs::write(
        &cfg,
        "experiment: [edited after abcond slurm, not a config\n",
    )
    .unwrap();
    let (array, analysis) = cluster.submit(&sdir);
    cluster.wait_jobs(&[&array, &analysis], 300);

    let recs = cluster.records();
    let tasks = task_records(&recs, &array);
    if tasks.keys().cloned().collect::<Vec<_>>() != ["0", "1", "2", "3"]
        || !tasks.values().all(done)
    {
        cluster.fail(&format!(
            "array {array}: expected tasks 0-3 COMPLETED with exit 0:0, got {tasks:#?}"
        ));
    }
    // The #SBATCH resource lines reached the scheduler.
    for r in tasks.values() {
        let want = [
            ("Partition", "debug"),
            ("Account", "abcond"),
            ("TimeLimit", "10"),
        ];
        if want
            .iter()
            .any(|(k, v)| r.get(*k).map(String::as_str) != Some(v))
            || !r
                .get("Tres")
                .is_some_and(|t| t.starts_with("cpu=1,mem=200M,"))
        {
            cluster.fail(&format!(
                "expected partition debug, account abcond, 10 min, cpu=1, mem=200M in {r:?}"
            ));
        }
    }
    let Some(ana) = recs
        .iter()
        .find(|r| r.get("JobId") == Some(&analysis))
        .cloned()
    else {
        cluster.fail(&format!(
            "no completion record of the analysis job {analysis}"
        ))
    };
    if !done(&ana) {
        cluster.fail(&format!(
            "analysis job {analysis} did not complete with 0:0: {ana:?}"
        ));
    }
    // afterany: the analysis starts once every task has ended (ISO times order as text).
    let last_end = tasks.values().map(|r| r["EndTime"].clone()).max().unwrap();
    assert!(
        ana["StartTime"] >= last_end,
        "analysis started {} before the last task ended {last_end}",
        ana["StartTime"]
    );
    for (i, r) in &tasks {
        let log =
            std::fs::read_to_string(sdir.join(format!("{array}_{i}.out"))).unwrap_or_default();
        let run = dir
            .join("res/onslurm")
            .join(&ids[i.parse::<usize>().unwrap()]);
        if !log.contains(&format!("abcond task {i} on "))
            || !log.contains("restart 0")
            || !log.contains(&format!("results: {}", run.display()))
        {
            cluster.fail(&format!(
                "log of task {i} ({r:?}) lacks the task line or its run {}:\n{log}",
                run.display()
            ));
        }
    }
    // --throttle 1: the scheduler started each task only after the one
    // before it had ended (ISO times order as text; each task takes seconds,
    // two started together would overlap by more than the 1 s resolution).
    let mut spans: Vec<(String, String)> = tasks
        .values()
        .map(|r| (r["StartTime"].clone(), r["EndTime"].clone()))
        .collect();
    spans.sort();
    if spans.windows(2).any(|w| w[1].0 < w[0].1) {
        cluster.fail(&format!(
            "--throttle 1: array tasks ran at the same time: {spans:?}"
        ));
    }
    let run_text = std::fs::read_to_string(sdir.join("run.sbatch")).unwrap();
    assert!(
        run_text.contains("#SBATCH --array=0-3%1\n") && run_text.contains("slurm/config.yaml"),
        "run.sbatch: expected the throttle %1 and the frozen config:\n{run_text}"
    );
    let alog =
        std::fs::read_to_string(sdir.join(format!("{analysis}-analyze.out"))).unwrap_or_default();
    if !alog.contains("4 runs: 4 ready to analyse, 0 missing or unfinished") {
        cluster.fail(&format!(
            "the analysis job should find all 4 runs finished by the array:\n{alog}"
        ));
    }
    let exp = dir.join("res/onslurm");
    let out = py(
        r#"
import sys, yaml, polars as pl
exp, ids = sys.argv[1], sys.argv[2:]
r = pl.read_parquet(exp + "/runs.parquet")
assert r["task"].to_list() == [0, 1, 2, 3], r
assert r["run_id"].to_list() == ids, (r, ids)
assert r["model.width"].to_list() == [8, 8, 16, 16] and r["seed"].to_list() == [0, 1, 0, 1], r
assert (r["status"] == "completed").all() and r["probed"].all(), r
for i in ids:
    m = yaml.safe_load(open(f"{exp}/{i}/run.yaml"))
    assert m["status"] == "completed" and m["probe"]["status"] == "completed", (i, m["status"], m["probe"])
    assert m["training"]["steps_done"] == 40 and len(m["sessions"]) == 1, (i, m["training"], m["sessions"])
    s = pl.read_parquet(f"{exp}/{i}/steps.parquet")
    assert s["step"].to_list() == list(range(40)), (i, s["step"])
    # 4 probed snapshots x (minibatch, extra batch, full) rows
    ls = pl.read_parquet(f"{exp}/{i}/landscape.parquet")
    assert ls.height == 12 and ls["run_id"].unique().to_list() == [i], (i, ls.height)
tr = pl.read_parquet(exp + "/analysis/trends.parquet")
assert tr["model.width"].to_list() == [8, 16] and tr["runs"].to_list() == [2, 2], tr
for t in ["aiming", "pl"]:
    df = pl.read_parquet(f"{exp}/analysis/{t}.parquet")
    assert sorted(df["run_id"].unique().to_list()) == sorted(ids), (t, df["run_id"].unique())
    per = df.group_by("run_id").len()["len"].to_list()
    # aiming: one row per probed snapshot; pl: one per snapshot and delta (5)
    assert per == [4 if t == "aiming" else 20] * 4, (t, per)
for t in ["ab_region", "ab_grid"]:
    df = pl.read_parquet(f"{exp}/analysis/{t}.parquet")
    assert sorted(df["model.width"].unique().to_list()) == [8, 16], t
s = yaml.safe_load(open(exp + "/analysis/summary.yaml"))
assert sorted(x["run_id"] for x in s["runs"]) == sorted(ids), s["runs"]
print("ok")
"#,
        &[
            &[exp.to_str().unwrap()][..],
            &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    assert!(out.starts_with("ok"), "{out}");
}

/// `scontrol requeue` of a task while it trains: it must resume from its last
/// checkpoint, neither restart nor repeat steps. Returns the resumed step.
fn requeue_mid_training(cluster: &mut Cluster, dir: &Path, base: &str) -> String {
    // Long enough (seconds on a busy 2-core machine) that the requeue lands mid-training.
    const STEPS: usize = 20000;
    let long = format!(
        "experiment: requeued\n{base}model: {{preset: mlp, width: 8}}\ntrain: {{batch_size: 16, steps: {STEPS}, checkpoint_every: 100}}\nsnapshots: {{every: 5000}}\n"
    );
    write_config(dir, "long.yaml", &long);
    ok(&abcond(dir, &["--out", "res", "slurm", "long.yaml"]));
    let rdir = dir.join("res/requeued/slurm");
    let (array2, analysis2) = cluster.submit(&rdir);
    let exp2 = dir.join("res/requeued");
    let run_dir = || {
        std::fs::read_dir(&exp2)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("run.yaml").is_file())
    };
    cluster.wait_for("the long run's first checkpoint", 120, |_| {
        run_dir().is_some_and(|r| r.join("state/checkpoint.parquet").is_file())
    });
    let run = run_dir().unwrap();
    let task = format!("{array2}_0");
    run_ok(cluster.slurm("scontrol").args(["requeue", &task]));
    let trained_before = run.join("steps.parquet").exists();
    // A requeued job waits 120 s (BeginTime); let it start soon after it is
    // pending, but not within seconds: slurmd refuses a job credential made in
    // the second its previous one was revoked by the requeue ("Job credential
    // revoked"; seen once in CI), which is why Slurm delays requeued jobs.
    cluster.wait_for("the requeued task to be pending", 60, |c| {
        c.slurm("squeue")
            .args(["-h", "-j", &task, "-o", "%t"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PD")
    });
    std::thread::sleep(REQUEUE_PAUSE);
    run_ok(
        cluster
            .slurm("scontrol")
            .args(["update", &format!("JobId={task}"), "StartTime=now"]),
    );
    cluster.wait_jobs(&[&array2, &analysis2], 300);
    assert!(
        !trained_before,
        "the run finished training before the requeue: make it longer"
    );

    let recs = cluster.records();
    let attempts: Vec<_> = recs
        .iter()
        .filter(|r| r.get("ArrayJobId") == Some(&array2))
        .collect();
    let last = attempts.last().cloned().cloned().unwrap_or_default();
    if attempts.len() < 2 || !done(&last) {
        cluster.fail(&format!(
            "requeued task {task}: expected a requeue record then COMPLETED 0:0, got {attempts:#?}"
        ));
    }
    let Some(ana2) = recs
        .iter()
        .find(|r| r.get("JobId") == Some(&analysis2))
        .cloned()
    else {
        cluster.fail(&format!(
            "no completion record of the analysis job {analysis2}"
        ))
    };
    assert!(done(&ana2), "{ana2:?}");
    assert!(
        ana2["StartTime"] >= last["EndTime"],
        "afterany must wait for the requeued task: analysis started {}, task ended {}",
        ana2["StartTime"],
        last["EndTime"]
    );
    let log = std::fs::read_to_string(rdir.join(format!("{array2}_0.out"))).unwrap();
    for want in ["restart 0", "DUE TO JOB REQUEUE", "restart 1"] {
        assert!(
            log.contains(want),
            "log lacks {want:?} (--open-mode=append keeps both attempts):\n{log}"
        );
    }
    // Reference: the same run trained locally without interruption.
    ok(&abcond(dir, &["-q", "--out", "ref", "train", "long.yaml"]));
    let reference = run_dir_of(&dir.join("ref/requeued"));
    assert_eq!(reference.file_name(), run.file_name());
    let out = py(
        r#"
import sys, yaml, polars as pl
run, ref, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = yaml.safe_load(open(run + "/run.yaml"))
assert m["status"] == "completed" and m["probe"]["status"] == "completed", m
ss = m["sessions"]
assert len(ss) >= 2 and ss[0]["start_step"] == 0, ss
# `scontrol requeue` sends SIGTERM: abcond writes a checkpoint at the step it
# is on (the signal checkpoint), so the requeued task resumes there, not at a
# multiple of checkpoint_every.
assert 0 < ss[1]["start_step"] < steps and ss[0]["outcome"] == "failed", ("resumed from the signal checkpoint", ss)
s = pl.read_parquet(run + "/steps.parquet")
assert s["step"].to_list() == list(range(steps)), "steps lost or repeated"
r = pl.read_parquet(ref + "/steps.parquet")
for c in ["loss", "grad_norm", "lr"]:
    assert s[c].to_list() == r[c].to_list(), c
print("ok", ss[1]["start_step"])
"#,
        &[
            run.to_str().unwrap(),
            reference.to_str().unwrap(),
            &STEPS.to_string(),
        ],
    );
    assert!(out.starts_with("ok"), "{out}");
    let last_iterate =
        |d: &Path| read_values(&d.join(format!("iterates/step={STEPS}/part-0.parquet")));
    assert_eq!(
        last_iterate(&run),
        last_iterate(&reference),
        "the requeued run's x^K must equal the uninterrupted run's"
    );
    out.split_whitespace().nth(1).unwrap_or("?").to_string()
}

fn run_dir_of(exp: &Path) -> PathBuf {
    run_dir(
        exp.parent().unwrap(),
        exp.file_name().unwrap().to_str().unwrap(),
    )
}

/// A run longer than its time limit (1 minute, SIGUSR1 50 s before it):
/// every attempt is stopped by Slurm's signal, checkpoints, requeues itself
/// and the next resumes at the step the last one reached, until one
/// completes. Returns the start steps of the run's sessions.
fn time_limit_resumes(cluster: &mut Cluster, dir: &Path, base: &str) -> Vec<u64> {
    // Slurm checks time limits (and sends the warning signal) every 30 s, so
    // the signal comes 10–40 s after the start: the run must train longer
    // than that. Its length is measured, not guessed: a short local run at one
    // thread (as the job runs) gives this machine's steps per second.
    const TRAIN_SECONDS: f64 = 60.0;
    let model = "model: {preset: mlp, width: 8}\n";
    write_config(
        dir,
        "calibrate.yaml",
        &format!("experiment: calibrate\n{base}{model}train: {{batch_size: 16, steps: 10000}}\nsnapshots: {{every: 10000}}\n"),
    );
    ok(&abcond(
        dir,
        &[
            "-q",
            "--threads",
            "1",
            "--out",
            "calibrate",
            "train",
            "calibrate.yaml",
        ],
    ));
    let calibration = run_dir_of(&dir.join("calibrate/calibrate"));
    let rate: f64 = py(
        "import sys, polars as pl
# Steady state: from step 1000 (past the start-up) to the last step.
w = pl.read_parquet(sys.argv[1] + '/steps.parquet')['wall_time_s'].to_list()
print((len(w) - 1 - 1000) / (w[-1] - w[1000]))",
        &[calibration.to_str().unwrap()],
    )
    .trim()
    .parse()
    .unwrap();
    let steps = ((rate * TRAIN_SECONDS / 1000.0).ceil() as u64).max(10) * 1000;
    // checkpoint_every beyond the run: every resume is from a signal checkpoint.
    write_config(
        dir,
        "timed.yaml",
        &format!("experiment: timed\n{base}{model}train: {{batch_size: 16, steps: {steps}, checkpoint_every: 100000000}}\nsnapshots: {{every: {}}}\n", steps / 2),
    );
    ok(&abcond(
        dir,
        &[
            "--out",
            "res",
            "slurm",
            "timed.yaml",
            "--time",
            "1",
            "--signal-seconds",
            "50",
            "--cpus-per-task",
            "1",
        ],
    ));
    let tdir = dir.join("res/timed/slurm");
    let (array, analysis) = cluster.submit(&tdir);
    let task = format!("{array}_0");
    // A requeued task waits 120 s (BeginTime); start each attempt once it
    // has been pending for REQUEUE_PAUSE (see requeue_mid_training).
    let t0 = Instant::now();
    let mut pending_since: Option<Instant> = None;
    loop {
        let o = cluster
            .slurm("squeue")
            .args(["-h", "-j", &format!("{array},{analysis}"), "-o", "%i %t"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&o.stdout).to_string();
        if o.status.success() && listed.trim().is_empty() {
            break;
        }
        let pending = listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [task.as_str(), "PD"]);
        if !pending {
            pending_since = None;
        } else if pending_since.get_or_insert_with(Instant::now).elapsed() >= REQUEUE_PAUSE {
            let _ = cluster
                .slurm("scontrol")
                .args(["update", &format!("JobId={task}"), "StartTime=now"])
                .output();
        }
        if t0.elapsed() > Duration::from_secs(6 * TRAIN_SECONDS as u64) {
            cluster.fail(&format!(
                "the time-limited run ({steps} steps at {rate:.0} steps/s) did not end within {} s",
                t0.elapsed().as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let recs = cluster.records();
    let attempts: Vec<_> = recs
        .iter()
        .filter(|r| r.get("ArrayJobId") == Some(&array))
        .cloned()
        .collect();
    let last = attempts.last().cloned().unwrap_or_default();
    if attempts.len() < 2
        || !done(&last)
        || attempts
            .iter()
            .any(|r| r.get("JobState").map(String::as_str) == Some("TIMEOUT"))
    {
        cluster.fail(&format!(
            "time-limited task {task} ({steps} steps at {rate:.0} steps/s): expected requeued attempts, none TIMEOUT, then COMPLETED 0:0; got {attempts:#?}"
        ));
    }
    let ana = recs
        .iter()
        .find(|r| r.get("JobId") == Some(&analysis))
        .cloned()
        .unwrap_or_default();
    assert!(done(&ana), "analysis job {analysis}: {ana:?}");
    let log = std::fs::read_to_string(tdir.join(format!("{array}_0.out"))).unwrap();
    let requeues = log
        .matches("abcond: time-limit signal; requeueing job")
        .count();
    assert!(
        requeues == attempts.len() - 1 && log.contains("SIGUSR1"),
        "{} attempts, but the log tells of {requeues} time-limit requeues (or no SIGUSR1):\n{log}",
        attempts.len()
    );
    let run = std::fs::read_dir(dir.join("res/timed"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("run.yaml").is_file())
        .expect("the time-limited run's directory");
    let out = py(
        r#"
import sys, yaml, polars as pl
run, steps, attempts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = yaml.safe_load(open(run + "/run.yaml"))
assert m["status"] == "completed" and m["probe"]["status"] == "completed", m
ss = m["sessions"]
# One training session per attempt; each stopped one ends where the next starts.
assert len(ss) == attempts and ss[0]["start_step"] == 0, (attempts, ss)
for a, b in zip(ss, ss[1:]):
    assert a["outcome"] == "failed" and a["end_step"] == b["start_step"], ss
    assert 0 < b["start_step"] < steps, ss
assert ss[-1]["outcome"] == "completed" and ss[-1]["end_step"] == steps, ss
s = pl.read_parquet(run + "/steps.parquet")
assert s["step"].to_list() == list(range(steps)), "steps lost or repeated"
assert s["loss"].is_finite().all()
print(" ".join(str(x["start_step"]) for x in ss))
"#,
        &[
            run.to_str().unwrap(),
            &steps.to_string(),
            &attempts.len().to_string(),
        ],
    );
    eprintln!(
        "slurm_cluster: time-limited run: {steps} steps (calibrated at {rate:.0} steps/s), {} attempts",
        attempts.len()
    );
    let starts: Vec<u64> = out.split_whitespace().map(|w| w.parse().unwrap()).collect();
    assert!(
        run.join(format!("iterates/step={steps}/part-0.parquet"))
            .is_file(),
        "x^K missing"
    );
    starts
}
