//! Files as people keep them, end to end through the `datamesh` binary on a testnet of six
//! real node processes: pipes (`put -`, `get -o -`, a reader that goes away), many files
//! in one command, the real mtime, byte ranges (`get --range`, counted in shards fetched),
//! resumable gets (a get SIGKILLed mid-transfer, continued), resumable puts (a put
//! SIGKILLed mid-transfer and its node restarted, continued without sending the placed
//! stripes again), folders, and bad input (a full disk, loops of links, odd names).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::{Outcome, Running, run_within, serial};
use datamesh_testnet::{Config, Kdf, Testnet};

mod support;
use support::{bin, counter};

const NODES: usize = 6;
const COMMAND_DEADLINE: Duration = Duration::from_secs(600);

fn testnet(dir: &Path) -> anyhow::Result<Testnet> {
    Testnet::up_with(Config::new(bin()?, dir.join("net"), NODES).with_kdf(Kdf::FAST))
        .context("cannot start the testnet")
}

fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

fn cli(net: &Testnet, args: &[&str]) -> Command {
    let mut cmd = net.cli(0);
    cmd.args(args);
    cmd
}

fn put(net: &Testnet, path: &Path, scratch: &Path) -> anyhow::Result<String> {
    let mut cmd = cli(net, &["put"]);
    cmd.arg(path);
    let out = run(cmd, scratch)?.ok(&format!("put {}", path.display()))?;
    let id = String::from_utf8(out)?.trim().to_string();
    ensure!(id.starts_with("dm1"), "put printed {id:?}");
    Ok(id)
}

const SHARDS_FETCHED: &str = "datamesh_shards_fetched_total";

/// Waits for `child` within the deadline (killed after it).
fn wait(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > COMMAND_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("a command did not finish within {COMMAND_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> anyhow::Result<String> {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut text)?;
    }
    Ok(text)
}

fn one_error_line(stderr: &str) -> anyhow::Result<String> {
    match stderr.lines().collect::<Vec<_>>()[..] {
        [line] if line.starts_with("error: ") => Ok(line.to_string()),
        _ => anyhow::bail!("expected one `error: ` line, got {stderr:?}"),
    }
}

/// `put -` from a pipe with `--name`, `get -o -` into a pipe, and a reader that closes
/// its end early; the real mtime sealed and restored; many files in one command, with
/// failures and `--fail-fast`; byte ranges and a range past the end.
#[test]
fn pipes_many_files_mtimes_and_ranges() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch)?;

    // put - from a pipe, named.
    let data = fs::read(make_file(scratch, 3 * MIB + 17, 1)?)?;
    let mut child = cli(&net, &["put", "-", "--name", "from-a-pipe.bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let input = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut id = String::new();
    child
        .stdout
        .take()
        .context("no stdout")?
        .read_to_string(&mut id)?;
    ensure!(
        wait(&mut child)?.success(),
        "put -: {}",
        stderr_of(&mut child)?
    );
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let id = id.trim().to_string();
    let listed = run(cli(&net, &["--json", "ls"]), scratch)?.ok("ls")?;
    let listed: serde_json::Value = serde_json::from_slice(&listed)?;
    ensure!(
        listed
            .as_array()
            .context("ls --json")?
            .iter()
            .any(|f| f["id"] == id.as_str() && f["name"] == "from-a-pipe.bin"),
        "ls does not show {id} as from-a-pipe.bin: {listed}"
    );

    // get -o - into a pipe: the same bytes.
    let out = run(cli(&net, &["get", &id, "-o", "-"]), scratch)?.ok("get -o -")?;
    ensure!(
        out == data,
        "get -o - gave {} bytes, not the file",
        out.len()
    );

    // A reader that goes away after 10 bytes: a clear error, non-zero, no panic.
    let mut child = cli(&net, &["get", &id, "-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut head = [0u8; 10];
    child
        .stdout
        .take()
        .context("no stdout")?
        .read_exact(&mut head)?; // dropped here: the pipe's reading end closes
    ensure!(head[..] == data[..10], "the first bytes differ");
    let status = wait(&mut child)?;
    let stderr = stderr_of(&mut child)?;
    ensure!(!status.success(), "get into a closed pipe succeeded");
    let line = one_error_line(&stderr)?;
    ensure!(
        line.contains("pipe") && !stderr.contains("panicked"),
        "{stderr}"
    );

    // The real mtime is sealed, and restored by get.
    let dated = make_file(scratch, 1000, 2)?;
    let then = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(&dated)?
        .set_modified(then)?;
    let dated_id = put(&net, &dated, scratch)?;
    let back = scratch.join("dated-back");
    let mut cmd = cli(&net, &["get", &dated_id, "-o"]);
    cmd.arg(&back);
    run(cmd, scratch)?.ok("get the dated file")?;
    assert_same_file(&dated, &back)?;
    ensure!(
        fs::metadata(&back)?.modified()? == then,
        "the mtime was not kept"
    );

    // Many files in one command: the missing one fails, the others are stored.
    let (a, b) = (
        make_file(scratch, 5000, 3)?,
        make_file(scratch, MIB + 1, 4)?,
    );
    let missing = scratch.join("no-such-file");
    let mut cmd = cli(&net, &["--json", "put"]);
    cmd.args([&a, &missing, &b]);
    let outcome = run(cmd, scratch)?;
    ensure!(outcome.code == Some(1), "put A missing B: {outcome:?}");
    let results: serde_json::Value = serde_json::from_slice(&outcome.stdout)?;
    let results = results.as_array().context("put --json of many")?.clone();
    ensure!(results.len() == 3, "{results:?}");
    ensure!(
        results[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-file")),
        "{results:?}"
    );
    let ids: Vec<String> = [&results[0], &results[2]]
        .iter()
        .map(|r| r["id"].as_str().map(str::to_string).context("no id"))
        .collect::<anyhow::Result<_>>()?;
    let folder = scratch.join("many");
    fs::create_dir(&folder)?;
    let bogus = "dm1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cmd = cli(&net, &["get", &ids[0], bogus, &ids[1], "-o"]);
    cmd.arg(&folder);
    let outcome = run(cmd, scratch)?;
    ensure!(outcome.code == Some(1), "get with a bad id: {outcome:?}");
    ensure!(outcome.stderr.contains("2 of 3"), "{}", outcome.stderr);
    for (path, name) in [(&a, "got-a"), (&b, "got-b")] {
        let file_name = path.file_name().context("name")?;
        assert_same_file(path, &folder.join(file_name)).context(name)?;
    }
    // --fail-fast stops at the first failure: B is not stored.
    let before = run(cli(&net, &["--json", "ls"]), scratch)?.ok("ls")?;
    let mut cmd = cli(&net, &["--json", "put", "--fail-fast"]);
    cmd.args([&missing, &b]);
    let outcome = run(cmd, scratch)?;
    ensure!(outcome.code == Some(1), "{outcome:?}");
    let results: serde_json::Value = serde_json::from_slice(&outcome.stdout)?;
    ensure!(results.as_array().map(Vec::len) == Some(1), "{results}");
    let after = run(cli(&net, &["--json", "ls"]), scratch)?.ok("ls")?;
    ensure!(
        before == after,
        "--fail-fast stored something after the failure"
    );

    // Ranges: exactly the bytes, across a segment edge; past the end: one line.
    let part = scratch.join("part");
    let (start, last) = (MIB - 5, MIB + 9);
    let mut cmd = cli(
        &net,
        &["get", &id, "--range", &format!("{start}-{last}"), "-o"],
    );
    cmd.arg(&part);
    run(cmd, scratch)?.ok("get --range")?;
    ensure!(
        fs::read(&part)? == data[start..=last],
        "the range's bytes differ"
    );
    let tail = run(
        cli(&net, &["get", &id, "--range", "3145728-", "-o", "-"]),
        scratch,
    )?
    .ok("get --range START-")?;
    ensure!(tail == data[3 * MIB..], "the open range's bytes differ");
    let past = format!("{}-{}", data.len(), data.len() + 10);
    let line = run(
        cli(&net, &["get", &id, "--range", &past, "-o", "-"]),
        scratch,
    )?
    .fails_with(1, "a range past the end")?;
    ensure!(line.contains("outside the file"), "{line}");

    // --segment-size: the file (large enough to be put resumably, in a session that
    // records its segment size) is cut into stripes of that size (3 here, 6 by default),
    // comes back the same whole and in a range across a segment's end; a size the
    // format does not allow is one line and exit 1, before anything is sent.
    let source = make_file(scratch, 5 * MIB + 17, 7)?;
    let data = fs::read(&source)?;
    let mut cmd = cli(&net, &["--json", "put", "--segment-size", "2MiB"]);
    cmd.arg(&source);
    let out = run(cmd, scratch)?.ok("put --segment-size 2MiB")?;
    let put: serde_json::Value = serde_json::from_slice(&out)?;
    ensure!(put["stripes"] == 3, "5 MiB in 2 MiB segments: {put}");
    let big = put["id"]
        .as_str()
        .context("put --json has no id")?
        .to_string();
    let back = run(cli(&net, &["get", &big, "-o", "-"]), scratch)?.ok("get")?;
    ensure!(
        back == data,
        "the file put in 2 MiB segments came back different"
    );
    let (start, last) = (2 * MIB - 7, 2 * MIB + 7);
    let across = run(
        cli(
            &net,
            &[
                "get",
                &big,
                "--range",
                &format!("{start}-{last}"),
                "-o",
                "-",
            ],
        ),
        scratch,
    )?
    .ok("get --range across a 2 MiB segment's end")?;
    ensure!(across == data[start..=last], "the range's bytes differ");
    for bad in ["3MiB", "32KiB", "32MiB", "2GiB", "x"] {
        let mut cmd = cli(&net, &["put", "--segment-size", bad]);
        cmd.arg(&source);
        let line = run(cmd, scratch)?.fails_with(1, "a bad --segment-size")?;
        ensure!(line.contains(bad), "{bad}: {line}");
    }
    // The node checks the size itself: an API client is refused in one line.
    let refused = net.with_api(0, COMMAND_DEADLINE, "put in 3 MiB segments", |client| {
        client
            .clone()
            .with_segment_size(Some(3 << 20))
            .put_bytes(b"x", "x", &[])
    });
    let Err(e) = refused else {
        anyhow::bail!("the node took a put in 3 MiB segments");
    };
    let e = e.to_string();
    ensure!(e.contains("segment size 3145728 bytes"), "{e}");
    Ok(())
}

/// The done-when of ranges and resumes on a 1 GiB file: a 1 MiB range in the middle
/// fetches at most two stripes' shards; a get SIGKILLed mid-transfer leaves nothing
/// under the final name and resumes (fetching less than the whole file again) to a
/// byte-identical, verified file; a resume state of another file is refused.
#[test]
fn one_gib_range_and_killed_get_resumed() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch)?;
    let len = 1024 * MIB;
    let input = make_file(scratch, len, 9)?;
    let id = put(&net, &input, scratch)?;

    // 1 MiB in the middle, not aligned: two stripes, at most 12 shards (hedges included).
    let start = len / 2 + 12345;
    let before = counter(&net, 0, SHARDS_FETCHED)?;
    let part = scratch.join("middle");
    let mut cmd = cli(
        &net,
        &[
            "get",
            &id,
            "--range",
            &format!("{start}-{}", start + MIB - 1),
            "-o",
        ],
    );
    cmd.arg(&part);
    run(cmd, scratch)?.ok("get a 1 MiB range")?;
    let fetched = counter(&net, 0, SHARDS_FETCHED)? - before;
    ensure!(
        (8..=12).contains(&fetched),
        "a 1 MiB range fetched {fetched} shards (two stripes: 8 to 12)"
    );
    let mut whole = fs::File::open(&input)?;
    let mut expected = vec![0u8; MIB];
    std::io::Seek::seek(&mut whole, std::io::SeekFrom::Start(start as u64))?;
    whole.read_exact(&mut expected)?;
    ensure!(fs::read(&part)? == expected, "the range's bytes differ");

    // A get SIGKILLed once a good part has arrived.
    let out_dir = scratch.join("out");
    fs::create_dir(&out_dir)?;
    let out = out_dir.join("big.bin");
    let partial = out_dir.join(".datamesh-get-big.bin.part");
    let mut cmd = cli(&net, &["get", &id, "-o"]);
    cmd.arg(&out);
    let mut get = Running::spawn(cmd, scratch, COMMAND_DEADLINE)?;
    let deadline = Instant::now() + COMMAND_DEADLINE;
    while fs::metadata(&partial).map_or(0, |m| m.len()) < 100 * MIB as u64 {
        ensure!(get.running()?, "the get ended before it could be killed");
        ensure!(Instant::now() < deadline, "the get wrote too little");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(get); // SIGKILL
    ensure!(
        !out.exists(),
        "a killed get left a file under the final name"
    );
    let had = fs::metadata(&partial)?.len();

    // Another file's id into the same -o: refused, one line naming the state.
    let other = put(&net, &make_file(scratch, 10, 10)?, scratch)?;
    let mut cmd = cli(&net, &["get", &other, "-o"]);
    cmd.arg(&out);
    let line = run(cmd, scratch)?.fails_with(1, "a resume of another file")?;
    ensure!(line.contains(".datamesh-resume-big.bin.json"), "{line}");

    let before = counter(&net, 0, SHARDS_FETCHED)?;
    let mut cmd = cli(&net, &["get", &id, "--resume", "-o"]);
    cmd.arg(&out);
    let said = run(cmd, scratch)?.ok_stderr("get --resume")?;
    ensure!(said.contains("resumed after"), "{said}");
    let fetched = counter(&net, 0, SHARDS_FETCHED)? - before;
    let stripes = (len / MIB) as u64;
    let skipped = had / MIB as u64;
    ensure!(
        fetched <= (stripes - skipped) * 6 && fetched < stripes * 4,
        "the resume fetched {fetched} shards for {} of {stripes} stripes",
        stripes - skipped
    );
    assert_same_file(&input, &out)?;
    let left: Vec<PathBuf> = fs::read_dir(&out_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    ensure!(left == [out.clone()], "left behind: {left:?}");
    Ok(())
}

/// A tree of `small` 4 KiB files (modes 0600/0640/0755, distinct mtimes, in nested
/// folders), a few large files (two identical), an empty folder and a link inside.
fn make_tree(root: &Path, small: usize) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::create_dir_all(root)?;
    fs::create_dir_all(root.join("empty"))?;
    for i in 0..small {
        let folder = root.join(format!("d{}/e{}", i % 10, i % 3));
        fs::create_dir_all(&folder)?;
        let path = folder.join(format!("f{i:04}.bin"));
        let mut bytes = vec![0u8; 4096];
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        fs::write(&path, &bytes)?;
        let mode = [0o600, 0o640, 0o755][i % 3];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        let when = UNIX_EPOCH + Duration::from_secs(1_500_000_000 + i as u64 * 61);
        fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(when)?;
    }
    let big = root.join("big");
    fs::create_dir_all(&big)?;
    for (name, len, seed) in [("a.bin", 5 * MIB + 3, 11), ("b.bin", 3 * MIB, 12)] {
        fs::copy(
            make_file(root.parent().context("root")?, len, seed)?,
            big.join(name),
        )?;
    }
    fs::copy(big.join("a.bin"), big.join("a-again.bin"))?;
    std::os::unix::fs::symlink("a.bin", big.join("latest"))?;
    // The link's own mtime (`touch -h` never follows it).
    let mut touch = Command::new("touch");
    touch
        .args(["-h", "-d", "@1300000000"])
        .arg(big.join("latest"));
    ensure!(touch.status()?.success(), "touch -h failed");
    for dir in ["d0", "big", "empty"] {
        let when = UNIX_EPOCH + Duration::from_secs(1_400_000_000);
        fs::File::open(root.join(dir))?.set_modified(when)?;
    }
    // The folder itself: a mode and an mtime of its own.
    fs::set_permissions(root, fs::Permissions::from_mode(0o750))?;
    fs::File::open(root)?.set_modified(UNIX_EPOCH + Duration::from_secs(1_350_000_000))?;
    Ok(())
}

/// Seconds of a modification time: what the metadata and the directory object keep.
fn mtime_secs(m: &fs::Metadata) -> anyhow::Result<u64> {
    Ok(m.modified()?.duration_since(UNIX_EPOCH)?.as_secs())
}

/// Every entry of `a` is in `b` with the same kind, bytes, mode, mtime (links' own
/// included) and link target.
fn assert_same_tree(a: &Path, b: &Path) -> anyhow::Result<usize> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut count = 0;
    for entry in fs::read_dir(a)? {
        let entry = entry?;
        let (x, y) = (entry.path(), b.join(entry.file_name()));
        let (mx, my) = (fs::symlink_metadata(&x)?, fs::symlink_metadata(&y)?);
        ensure!(
            mx.file_type() == my.file_type(),
            "{}: kind differs",
            y.display()
        );
        if mx.file_type().is_symlink() {
            ensure!(
                fs::read_link(&x)? == fs::read_link(&y)?,
                "{}: target",
                y.display()
            );
            ensure!(
                mtime_secs(&mx)? == mtime_secs(&my)?,
                "{}: the link's mtime",
                y.display()
            );
        } else {
            ensure!(
                mx.permissions().mode() & 0o7777 == my.permissions().mode() & 0o7777,
                "{}: mode",
                y.display()
            );
            if mx.is_dir() {
                count += assert_same_tree(&x, &y)?;
            } else {
                ensure!(fs::read(&x)? == fs::read(&y)?, "{}: bytes", y.display());
            }
            ensure!(
                mtime_secs(&mx)? == mtime_secs(&my)?,
                "{}: mtime",
                y.display()
            );
        }
        count += 1;
    }
    Ok(count)
}

/// The done-when of folders: 1,000 small files and a few large ones (two identical,
/// stored once) round-trip byte-identical with modes and mtimes; `ls ID` lists the
/// entries; a non-empty target is refused without --force; a link leaving the folder and
/// a name of invalid UTF-8 are one-line errors naming the path.
#[test]
fn folders_round_trip_with_modes_mtimes_and_links() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch)?;
    let tree = scratch.join("tree");
    make_tree(&tree, 1000)?;

    let puts_before = counter(&net, 0, "datamesh_puts_total")?;
    let mut cmd = cli(&net, &["--json", "put", "-r"]);
    cmd.arg(&tree);
    let out: serde_json::Value = serde_json::from_slice(&run(cmd, scratch)?.ok("put -r")?)?;
    let id = out["id"].as_str().context("no id")?.to_string();
    // 1000 small + 3 large of which 2 identical + the directory object.
    let puts = counter(&net, 0, "datamesh_puts_total")? - puts_before;
    ensure!(puts == 1000 + 2 + 1, "put -r made {puts} puts: {out}");

    let listed = run(cli(&net, &["--json", "ls", &id]), scratch)?.ok("ls ID")?;
    let listed: serde_json::Value = serde_json::from_slice(&listed)?;
    let entries = listed.as_array().context("ls ID --json")?.len();
    ensure!(
        entries == out["entries"].as_u64().context("entries")? as usize,
        "{entries}"
    );

    let back = scratch.join("back");
    let mut cmd = cli(&net, &["get", "-r", &id, "-o"]);
    cmd.arg(&back);
    run(cmd, scratch)?.ok("get -r")?;
    let compared = assert_same_tree(&tree, &back)?;
    ensure!(
        compared == entries,
        "compared {compared} of {entries} entries"
    );
    // The folder's own mode and mtime.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let (a, b) = (fs::metadata(&tree)?, fs::metadata(&back)?);
        ensure!(
            b.permissions().mode() & 0o7777 == 0o750,
            "the folder's mode: {:o}",
            b.permissions().mode()
        );
        ensure!(mtime_secs(&a)? == mtime_secs(&b)?, "the folder's own mtime");
    }

    // `ls` and `get -r` of a file that is no folder (empty or not): one line.
    for (n, len) in [(0usize, 20), (1, 5000)] {
        let plain = put(&net, &make_file(scratch, len, 30 + n as u64)?, scratch)?;
        let line = run(cli(&net, &["ls", &plain]), scratch)?.fails_with(1, "ls of a file")?;
        ensure!(line.contains("not a folder"), "{line}");
    }
    let empty = scratch.join("empty-file");
    fs::write(&empty, b"")?;
    let empty_id = put(&net, &empty, scratch)?;
    let line = run(cli(&net, &["ls", &empty_id]), scratch)?.fails_with(1, "ls of an empty file")?;
    ensure!(line.contains("not a folder"), "{line}");

    // Again into the now non-empty folder: refused without --force.
    let mut cmd = cli(&net, &["get", "-r", &id, "-o"]);
    cmd.arg(&back);
    let line = run(cmd, scratch)?.fails_with(1, "get -r into a non-empty folder")?;
    ensure!(line.contains("--force"), "{line}");

    // A link that leaves the folder: stored as a link, refused on restore.
    let escape = scratch.join("escape");
    fs::create_dir(&escape)?;
    fs::write(escape.join("ok.txt"), b"ok")?;
    std::os::unix::fs::symlink("../../outside", escape.join("evil"))?;
    let mut cmd = cli(&net, &["put", "-r"]);
    cmd.arg(&escape);
    let escape_id = String::from_utf8(run(cmd, scratch)?.ok("put -r with a link out")?)?;
    let out_dir = scratch.join("escape-back");
    let mut cmd = cli(&net, &["get", "-r", escape_id.trim(), "-o"]);
    cmd.arg(&out_dir);
    let line = run(cmd, scratch)?.fails_with(1, "get -r of a link out")?;
    ensure!(line.contains("evil") && line.contains("refused"), "{line}");
    ensure!(
        !scratch.join("outside").exists(),
        "something was written outside"
    );

    // A name that is not UTF-8: one line naming the path.
    use std::os::unix::ffi::OsStrExt as _;
    let odd = scratch.join("odd");
    fs::create_dir(&odd)?;
    fs::write(
        odd.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name")),
        b"x",
    )?;
    let mut cmd = cli(&net, &["put", "-r"]);
    cmd.arg(&odd);
    let line = run(cmd, scratch)?.fails_with(1, "put -r of a non-UTF-8 name")?;
    ensure!(line.contains("bad-") && line.contains("UTF-8"), "{line}");

    // A loop of links: `put -r` stores them as links (never followed) and `get -r`
    // gives them back; `put` of one is a one-line error naming it.
    let looped = scratch.join("looped");
    fs::create_dir(&looped)?;
    std::os::unix::fs::symlink("b", looped.join("a"))?;
    std::os::unix::fs::symlink("a", looped.join("b"))?;
    let mut cmd = cli(&net, &["put", "-r"]);
    cmd.arg(&looped);
    let looped_id = String::from_utf8(run(cmd, scratch)?.ok("put -r of a loop of links")?)?;
    let looped_back = scratch.join("looped-back");
    let mut cmd = cli(&net, &["get", "-r", looped_id.trim(), "-o"]);
    cmd.arg(&looped_back);
    run(cmd, scratch)?.ok("get -r of a loop of links")?;
    ensure!(
        fs::read_link(looped_back.join("a"))? == Path::new("b")
            && fs::read_link(looped_back.join("b"))? == Path::new("a"),
        "the loop of links did not come back as links"
    );
    let mut cmd = cli(&net, &["put"]);
    cmd.arg(looped.join("a"));
    let line = run(cmd, scratch)?.fails_with(1, "put of a loop of links")?;
    ensure!(line.contains("looped/a"), "{line}");

    // A file the command may not read: one line naming it. As root the command runs
    // without the capabilities that read past permissions (`setpriv`).
    {
        use std::os::unix::fs::PermissionsExt as _;
        let locked = scratch.join("locked");
        fs::create_dir(&locked)?;
        fs::write(locked.join("open.txt"), b"open")?;
        fs::write(locked.join("secret.txt"), b"secret")?;
        fs::set_permissions(locked.join("secret.txt"), fs::Permissions::from_mode(0o000))?;
        let plain = cli(&net, &["put", "-r"]);
        let mut cmd = if datamesh_testnet::require_root_for_hosts().is_ok() {
            let mut wrapped = Command::new("setpriv");
            wrapped.args(["--bounding-set=-dac_override,-dac_read_search", "--"]);
            wrapped.arg(plain.get_program()).args(plain.get_args());
            wrapped
        } else {
            plain
        };
        cmd.arg(&locked);
        let line = run(cmd, scratch)?.fails_with(1, "put -r of an unreadable file")?;
        ensure!(
            line.contains("locked/secret.txt") && line.contains("denied"),
            "{line}"
        );
    }

    // A name that is not UTF-8, put alone (not in a folder): stored under a lossy name.
    let odd_file = odd.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name"));
    let mut cmd = cli(&net, &["put"]);
    cmd.arg(&odd_file);
    run(cmd, scratch)?.ok("put of a file with a non-UTF-8 name")?;
    Ok(())
}

/// The figure of the report, not a check (run with `--ignored`): `put -r` and `get -r` of
/// 1,000 x 4 KiB files next to 1,000 `datamesh put` processes, one file each.
#[test]
#[ignore = "a measurement: prints timings"]
fn figure_tree_against_single_puts() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch)?;
    let tree = scratch.join("tree");
    make_tree(&tree, 1000)?;
    fs::remove_dir_all(tree.join("big"))?;
    let started = Instant::now();
    let mut cmd = cli(&net, &["put", "-r"]);
    cmd.arg(&tree);
    let id = String::from_utf8(run(cmd, scratch)?.ok("put -r")?)?;
    let tree_put = started.elapsed();
    let started = Instant::now();
    let mut cmd = cli(&net, &["get", "-r", id.trim(), "-o"]);
    cmd.arg(scratch.join("back"));
    run(cmd, scratch)?.ok("get -r")?;
    let tree_get = started.elapsed();
    let mut files = Vec::new();
    for d in fs::read_dir(&tree)? {
        for e in fs::read_dir(d?.path())? {
            for f in fs::read_dir(e?.path())? {
                files.push(f?.path());
            }
        }
    }
    let started = Instant::now();
    for f in &files {
        put(&net, f, scratch)?;
    }
    let singles = started.elapsed();
    writeln!(
        std::io::stderr(),
        "FIGURE put -r of {} x 4 KiB: {tree_put:?}; get -r: {tree_get:?}; {} single `datamesh put` processes: {singles:?}",
        files.len(),
        files.len()
    )?;
    Ok(())
}

const STORES_SENT: &str = "datamesh_put_stores_sent_total";

/// SIGKILLs `put PATH` once node 0 has sent `stores` shard stores for it, then waits for
/// the node to stop placing what it had read.
fn put_killed_after(net: &Testnet, path: &Path, stores: u64, scratch: &Path) -> anyhow::Result<()> {
    let before = counter(net, 0, STORES_SENT)?;
    let mut cmd = cli(net, &["put"]);
    cmd.arg(path);
    let mut put = Running::spawn(cmd, scratch, COMMAND_DEADLINE)?;
    let deadline = Instant::now() + COMMAND_DEADLINE;
    while counter(net, 0, STORES_SENT)? - before < stores {
        ensure!(put.running()?, "the put ended before it could be killed");
        ensure!(Instant::now() < deadline, "the put sent too little");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(put); // SIGKILL
    // The node goes on placing what it had read of the body until it sees the upload
    // broken: wait until its count of stores stops moving (unchanged over 600 ms), so the
    // caller's next count is its own.
    let mut last = counter(net, 0, STORES_SENT)?;
    let mut still = 0;
    while still < 3 {
        ensure!(
            Instant::now() < deadline,
            "the killed put never stopped storing"
        );
        std::thread::sleep(Duration::from_millis(200));
        let now = counter(net, 0, STORES_SENT)?;
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    Ok(())
}

/// The one file in `dir` (a resume state).
fn only_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("no {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    match &files[..] {
        [one] => Ok(one.clone()),
        _ => anyhow::bail!("expected one file in {}: {files:?}", dir.display()),
    }
}

fn mode_of(path: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

/// The done-when of resumable puts: a put of a large file SIGKILLed mid-transfer, then
/// its node SIGKILLed and restarted, resumes with the same data key and stripes: the
/// stripes placed are not sent again (counted: the stores sent after the resume are
/// fewer than the file's shards) and the file gets back byte-identical and verified.
/// The states are 0600 and gone once the put succeeded; a state of another file, a
/// changed source (mtime), a get state of another version, and a source whose bytes
/// changed under the same size and mtime (found by the node, which sends nothing of it
/// and deletes what the put placed) are one-line errors naming the path.
#[test]
fn killed_put_resumes_without_sending_placed_stripes() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net = testnet(scratch)?;
    let stripes: u64 = 160;
    let input = make_file(scratch, stripes as usize * MIB, 21)?;
    let home = net.home(0);
    let sessions = home.join("node/db/put-sessions");

    put_killed_after(&net, &input, 6 * 60, scratch)?;
    let state = only_file(&home.join("put-resume"))?;
    let session_file = only_file(&sessions)?;
    ensure!(
        mode_of(&state)? == 0o600 && mode_of(&session_file)? == 0o600,
        "resume states not 0600"
    );
    ensure!(mode_of(&sessions)? == 0o700, "put-sessions not 0700");
    let state_text = fs::read_to_string(&state)?;
    let session: serde_json::Value = serde_json::from_str(&state_text)?;
    ensure!(
        session_file.file_name()
            == Some(std::ffi::OsStr::new(&format!(
                "{}.put",
                session["session"].as_str().context("no session")?
            ))),
        "{state_text} does not name {}",
        session_file.display()
    );

    // The node goes down too (SIGKILL) and comes back: the session is on its disk.
    net.kill(0)?;
    net.start(0)?;

    // A changed source (another mtime): refused, one line naming it and the state.
    let modified = fs::metadata(&input)?.modified()?;
    let file = fs::File::options().write(true).open(&input)?;
    file.set_modified(modified + Duration::from_secs(5))?;
    let mut cmd = cli(&net, &["put"]);
    cmd.arg(&input);
    let line = run(cmd, scratch)?.fails_with(1, "a put of a changed source")?;
    ensure!(
        line.contains(&input.display().to_string())
            && line.contains(&state.display().to_string())
            && line.contains("changed"),
        "{line}"
    );
    file.set_modified(modified)?;
    drop(file);

    // The state of another file under this file's name: refused, naming both.
    let mut other: serde_json::Value = session.clone();
    other["path"] = serde_json::json!("/elsewhere/other.bin");
    fs::write(&state, serde_json::to_vec(&other)?)?;
    let mut cmd = cli(&net, &["put"]);
    cmd.arg(&input);
    let line = run(cmd, scratch)?.fails_with(1, "a put state of another file")?;
    ensure!(
        line.contains("/elsewhere/other.bin") && line.contains(&state.display().to_string()),
        "{line}"
    );
    fs::write(&state, &state_text)?;

    // Resumed: only the stripes not yet placed are sent.
    let before = counter(&net, 0, STORES_SENT)?;
    let mut cmd = cli(&net, &["--json", "put"]);
    cmd.arg(&input);
    let outcome = run(cmd, scratch)?;
    let out: serde_json::Value = serde_json::from_slice(&outcome.ok("the resumed put")?)?;
    let sent = counter(&net, 0, STORES_SENT)? - before;
    let resumed = out["resumed_stripes"].as_u64().context("resumed_stripes")?;
    ensure!(out["stripes"].as_u64() == Some(stripes), "{out}");
    // 60 stripes' shards were sent before the kill; all but those still in flight were
    // acknowledged and recorded.
    ensure!(
        resumed >= 40 && resumed < stripes,
        "{resumed} of {stripes} stripes resumed"
    );
    ensure!(
        sent < 6 * stripes && sent <= 6 * (stripes - resumed) + 6 * 3,
        "the resumed put sent {sent} stores for {} of {stripes} stripes",
        stripes - resumed
    );
    ensure!(!state.exists(), "the put's resume state was left behind");
    ensure!(
        fs::read_dir(&sessions)?.next().is_none(),
        "the node's put session was left behind"
    );
    let id = out["id"].as_str().context("no id")?;
    let back = scratch.join("back.bin");
    let mut cmd = cli(&net, &["get", id, "-o"]);
    cmd.arg(&back);
    run(cmd, scratch)?.ok("get the resumed file")?;
    assert_same_file(&input, &back)?;

    // A get's resume state of another version: one line naming it.
    let stale = scratch.join(".datamesh-resume-stale.bin.json");
    fs::write(
        &stale,
        br#"{"format":"datamesh get resume","version":9,"file":"x","manifest_version":2,"size":1,"segment_size":65536,"blake3":"00","mtime":null}"#,
    )?;
    let mut cmd = cli(&net, &["get", id, "-o"]);
    cmd.arg(scratch.join("stale.bin"));
    let line = run(cmd, scratch)?.fails_with(1, "a get state of another version")?;
    ensure!(line.contains(".datamesh-resume-stale.bin.json"), "{line}");
    ensure!(
        !scratch.join("stale.bin").exists(),
        "written despite the state"
    );

    // Bytes changed under the same size, mtime and inode: the node finds stripe 5
    // different from the one it placed, sends nothing of it, ends the put and deletes
    // what it placed; the state goes too.
    let small = make_file(scratch, 32 * MIB, 22)?;
    put_killed_after(&net, &small, 6 * 16, scratch)?;
    let modified = fs::metadata(&small)?.modified()?;
    {
        use std::io::{Seek, SeekFrom};
        let mut file = fs::File::options().write(true).open(&small)?;
        file.seek(SeekFrom::Start(5 * MIB as u64 + 7))?;
        file.write_all(b"changed")?;
        file.set_modified(modified)?;
    }
    let deleted_before = counter(&net, 0, "datamesh_put_cleanup_deleted_total")?;
    let before = counter(&net, 0, STORES_SENT)?;
    let mut cmd = cli(&net, &["put"]);
    cmd.arg(&small);
    let line = run(cmd, scratch)?.fails_with(1, "a put of changed bytes")?;
    ensure!(
        line.contains("source changed") && line.contains("stripe 5"),
        "{line}"
    );
    // At most stripes 0-4 again (placed before the kill; any not yet acknowledged then),
    // nothing of stripe 5 or later.
    let sent = counter(&net, 0, STORES_SENT)? - before;
    ensure!(sent <= 6 * 5, "{sent} stores sent for a changed source");
    ensure!(
        counter(&net, 0, "datamesh_put_cleanup_deleted_total")? > deleted_before,
        "the placed shards were not deleted"
    );
    ensure!(
        fs::read_dir(home.join("put-resume"))?.next().is_none(),
        "the put state of a changed source was kept"
    );
    ensure!(
        fs::read_dir(&sessions)?.next().is_none(),
        "the node's session of a changed source was kept"
    );
    // Then it is put anew.
    let fresh = put(&net, &small, scratch)?;
    let back = scratch.join("small-back.bin");
    let mut cmd = cli(&net, &["get", &fresh, "-o"]);
    cmd.arg(&back);
    run(cmd, scratch)?.ok("get the file put anew")?;
    assert_same_file(&small, &back)?;
    Ok(())
}

/// A full local disk during get: one line naming the path, nothing under the final
/// name. The disk is a 2 MiB tmpfs mounted in a mount namespace of the command's own
/// (`unshare --mount`), gone with it: nothing is mounted on the host. Needs root.
#[test]
fn a_full_disk_during_get_is_one_line_and_leaves_no_file() -> anyhow::Result<()> {
    datamesh_testnet::require_root_for_hosts().map_err(|e| {
        anyhow::anyhow!("{e} (this test mounts a tmpfs in a private mount namespace)")
    })?;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch)?;
    let input = make_file(scratch, 5 * MIB, 31)?;
    let id = put(&net, &input, scratch)?;
    let small = scratch.join("small-disk");
    fs::create_dir(&small)?;
    // The CLI as testnet runs it, inside the namespace, then what is left on the tmpfs.
    let probe = cli(&net, &["get", &id, "-o"]);
    let script = "mount -t tmpfs -o size=2m datamesh-test \"$1\" || exit 90\nshift\n\"$@\"\nrc=$?\nls -A \"$DIR\" >&2\nexit $rc\n";
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ]);
    cmd.arg(&small);
    cmd.arg(probe.get_program());
    cmd.args(probe.get_args());
    cmd.arg(small.join("out.bin"));
    cmd.env("DIR", &small);
    for (key, value) in probe.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let outcome = run(cmd, scratch)?;
    ensure!(outcome.code == Some(1), "get onto a full disk: {outcome:?}");
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
    ensure!(
        errors.len() == 1 && errors[0].contains("out.bin") && errors[0].contains("No space left"),
        "{}",
        outcome.stderr
    );
    ensure!(
        !lines.contains(&"out.bin"),
        "a file was left under the final name: {}",
        outcome.stderr
    );
    ensure!(
        fs::read_dir(&small)?.next().is_none(),
        "the tmpfs leaked out of its namespace"
    );
    Ok(())
}
