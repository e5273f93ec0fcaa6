//! A private nginx for a test: Debian's `/usr/sbin/nginx` started in the foreground
//! (`-c FILE -p PREFIX -g 'daemon off;'`) with a main configuration of its own whose pid file,
//! logs and temp files are all in a temp dir, so it needs no root and touches nothing of the
//! machine's nginx. The test gives the `http`-context part (a `conf.d` file, e.g. the one
//! `docs/deploy.md` shows) with the port nginx must listen on filled in. Stopped (SIGQUIT, then
//! SIGKILL for the process group) when dropped.
//!
//! A missing nginx fails the test with a message saying what to install.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private nginx.
pub struct Nginx {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx with `site(port)` as the content of its `http` block, on a free port of
    /// 127.0.0.1 (retried with another port if that one was taken meanwhile). Panics with
    /// nginx's own message when the configuration is refused.
    pub fn start(site: impl Fn(u16) -> String) -> Nginx {
        let binary = find_nginx();
        let dir = tempfile::Builder::new().prefix("roster-nginx-").tempdir().expect("temp dir for nginx");
        let mut nginx = Nginx { port: 0, dir, child: None };
        let mut last = String::new();
        for _ in 0..5 {
            nginx.port = crate::free_port();
            match nginx.spawn(&binary, &site(nginx.port)) {
                Ok(()) => return nginx,
                Err(e) => {
                    nginx.stop();
                    if !e.contains("Address already in use") {
                        panic!("{e}");
                    }
                    last = e;
                }
            }
        }
        panic!("could not start nginx: {last}");
    }

    fn spawn(&mut self, binary: &Path, site: &str) -> Result<(), String> {
        let prefix = self.dir.path();
        std::fs::write(prefix.join("site.conf"), site).map_err(|e| format!("writing site.conf: {e}"))?;
        let _ = std::fs::remove_file(prefix.join("error.log"));
        // Run as root (as the tests do in containers), nginx's workers would switch to the
        // compiled-in `nobody` user, whose group Debian does not have: name the user, and let
        // it into the temp dir.
        let user = if crate::running_as_root() {
            std::fs::set_permissions(prefix, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(|e| format!("chmod of nginx's temp dir: {e}"))?;
            "user nobody nogroup;\n"
        } else {
            ""
        };
        let main = format!(
            "# Written by testkit::nginx: everything in this directory.\n\
             {user}worker_processes 1;\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             access_log {p}/access.log;\n\
             client_body_temp_path {p}/client_body;\n\
             proxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi;\n\
             scgi_temp_path {p}/scgi;\n\
             include {p}/site.conf;\n\
             }}\n",
            p = prefix.display()
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, main).map_err(|e| format!("writing nginx.conf: {e}"))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(prefix)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prefix.join("stderr.log")).map_err(|e| e.to_string())?)
            // Its own process group, so that the master and its workers can be killed together.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("nginx exited at start ({status}):\n{}", self.log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("nginx did not listen on port {} in time:\n{}", self.port, self.log()))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What nginx wrote to stderr and its error log (for failure messages).
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    /// nginx's access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Stops nginx: a graceful quit, then SIGKILL for the whole process group.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-QUIT", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Workers outlive a killed master: end the group in any case.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/usr/sbin/nginx` (Debian's; not on a user's PATH), or `nginx` on PATH.
fn find_nginx() -> PathBuf {
    Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()).or_else(|| crate::which("nginx")).unwrap_or_else(
        || {
            panic!("nginx not found (/usr/sbin/nginx or PATH): install it (Debian: apt-get install nginx); scripts/test does")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn serves_the_site_it_is_given_and_stops() {
        let nginx = Nginx::start(|port| {
            format!("server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"hello from nginx\\n\"; }} }}\n")
        });
        let mut s = std::net::TcpStream::connect(nginx.addr()).expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read");
        assert!(reply.starts_with("HTTP/1.1 200") && reply.ends_with("hello from nginx\n"), "{reply}");
        assert!(nginx.access_log().contains("\"GET / HTTP/1.0\" 200"), "{}", nginx.access_log());
        let addr = nginx.addr();
        drop(nginx);
        assert!(std::net::TcpStream::connect(addr).is_err(), "stopped with its workers");
    }

    #[test]
    #[should_panic(expected = "nginx exited at start")]
    fn a_bad_configuration_fails_with_nginx_s_message() {
        let _ = Nginx::start(|_| "this is not nginx configuration;\n".to_owned());
    }
}
