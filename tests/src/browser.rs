//! A real browser for dashboard tests: Debian's headless Chromium, driven
//! over WebDriver by its chromedriver.
//!
//! Each [`Browser`] runs its own chromedriver on a free loopback port and
//! one Chromium session with a fresh profile; dropping it ends both (the
//! driver runs in its own process group, so no Chromium outlives a failed
//! test). Under `CI=true` a missing browser fails the test with what to
//! install; elsewhere the test skips with one line.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A browser session and the driver behind it.
pub struct Browser {
    pub client: Client,
    _driver: KillOnDrop,
    _profile: tempfile::TempDir,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// Starts Chromium, or returns `None` (skip) when it is not installed
    /// and this is not CI.
    pub async fn start() -> Option<Self> {
        let (Some(driver), Some(chromium)) = (
            find(&["chromedriver"]),
            find(&["chromium", "chromium-browser", "google-chrome"]),
        ) else {
            let why = "headless Chromium is not installed (Debian: apt-get install chromium \
                       chromium-driver)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; .ci/run installs it"
            );
            eprintln!("skipping a browser test: {why}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("tempdir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let guard = KillOnDrop(Some(driver));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver at {url} gave no session: {e}"),
            }
        };
        Some(Self {
            client,
            _driver: guard,
            _profile: profile,
        })
    }

    /// Opens `url` and waits until the page has drawn itself.
    pub async fn open(&self, url: &str) {
        eprintln!("browser: open {url}");
        self.client.goto(url).await.expect("navigates");
        self.ready().await;
    }

    /// Waits until the dashboard marks the page drawn (`body[data-ready]`).
    pub async fn ready(&self) {
        self.wait_for("the page to draw", "body[data-ready]").await;
    }

    /// Waits up to 20 s for `css` to match an element.
    pub async fn wait_for(&self, what: &str, css: &str) -> fantoccini::elements::Element {
        eprintln!("browser: waiting for {what}");
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .every(Duration::from_millis(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {what} ({css}): {e}"))
    }

    /// Whether `css` matches anything now.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .is_empty()
    }

    /// Clicks `css`, finding it again if a live update redrew it between
    /// finding and clicking.
    pub async fn click(&self, css: &str) {
        for _ in 0..20 {
            match self.wait_for(css, css).await.click().await {
                Ok(()) => return,
                Err(e) if e.to_string().contains("stale element") => continue,
                Err(e) => panic!("click {css}: {e}"),
            }
        }
        panic!("click {css}: the element kept being redrawn");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_for(css, css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css, css).await.text().await.expect("text")
    }

    /// Runs `script` (a function body; `arguments[0]` is a callback) and
    /// returns what it passes to the callback.
    pub async fn run_async(&self, script: &str) -> serde_json::Value {
        self.client
            .execute_async(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Saves a PNG of the viewport as `name`.png under target/screenshots,
    /// and under docs/screenshots when INTERLOCK_SCREENSHOTS=docs.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| crate::repo().join("target"), PathBuf::from);
        let mut dirs = vec![target.join("screenshots")];
        if std::env::var("INTERLOCK_SCREENSHOTS").as_deref() == Ok("docs") {
            dirs.push(crate::repo().join("docs/screenshots"));
        }
        for d in dirs {
            std::fs::create_dir_all(&d).expect("screenshot dir");
            write(&d.join(format!("{name}.png")), &png);
        }
    }

    /// Ends the session and the driver.
    pub async fn close(self) {
        let Self {
            client,
            _driver,
            _profile,
        } = self;
        let _ = client.close().await;
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Kills the driver's process group (Chromium included) when dropped.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            kill_group(c);
        }
    }
}

fn kill_group(c: &mut Child) {
    // `-s SIGNAL -- -PGID`: procps-ng's kill reads `kill -KILL -PGID` as
    // a signal option followed by garbage and signals the wrong group
    // (strace shows kill(-2, ...)), which can take down every process.
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", c.id())])
        .status();
    let _ = c.kill();
    let _ = c.wait();
}
