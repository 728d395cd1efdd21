//! A database of its own for each test, on the server that
//! `LINECHAT_TEST_POSTGRES` names (`.ci/run` starts one with
//! `scripts/pg.sh`), dropped when the test ends. Without that variable the
//! PostgreSQL cases are skipped, and say so, unless `LINECHAT_PG_TEST=require`,
//! which fails them instead.

use std::sync::atomic::{AtomicU32, Ordering};

use postgres::{Client, NoTls};

pub struct TestDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

/// The server's URL, or `None` (after saying so) when PostgreSQL tests are
/// not asked for.
pub fn server_url() -> Option<String> {
    match std::env::var("LINECHAT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert_ne!(
                std::env::var("LINECHAT_PG_TEST").as_deref(),
                Ok("require"),
                "LINECHAT_PG_TEST=require but LINECHAT_TEST_POSTGRES is not set"
            );
            eprintln!("PostgreSQL cases skipped: LINECHAT_TEST_POSTGRES is not set");
            None
        }
    }
}

impl TestDb {
    /// A new empty database, or `None` when PostgreSQL tests are skipped.
    pub fn create() -> Option<TestDb> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin_url = server_url()?;
        let name = format!(
            "linechat_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = Client::connect(&admin_url, NoTls).expect("LINECHAT_TEST_POSTGRES");
        // One statement each: neither may run inside a transaction block.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&sql).expect("creating a test database");
        }
        let url = match admin_url.rfind('/') {
            Some(slash) => format!("{}/{name}", &admin_url[..slash]),
            None => panic!("LINECHAT_TEST_POSTGRES needs a /database: {admin_url}"),
        };
        Some(TestDb {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.admin_url, NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
