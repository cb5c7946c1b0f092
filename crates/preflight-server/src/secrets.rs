//! Development secrets: generated once into the data directory so restarts keep keys and
//! sessions valid. Production never comes here; it refuses to start without real secrets.

use std::fs;
use std::io::Write;
use std::path::Path;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{secret_weakness, Config, Secret};

const SECRETS_FILE: &str = "dev-secrets.json";

#[derive(Serialize, Deserialize)]
struct StoredSecrets {
    jwt_secret: String,
    api_key_salt: String,
}

fn random_hex32() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Fills in missing `JWT_SECRET` / `API_KEY_SALT` from (or into) `<data_dir>/dev-secrets.json`.
/// Returns the names of the secrets that were newly generated, so the caller can warn.
pub fn ensure_dev_secrets(config: &mut Config) -> anyhow::Result<Vec<&'static str>> {
    if config.jwt_secret.is_some() && config.api_key_salt.is_some() {
        return Ok(Vec::new());
    }
    anyhow::ensure!(
        !config.is_production(),
        "production never generates secrets; set JWT_SECRET and API_KEY_SALT"
    );
    let path = config.data_dir.join(SECRETS_FILE);
    let mut generated = Vec::new();
    let stored = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<StoredSecrets>(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid ({e}); delete it to regenerate",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            generated.push("JWT_SECRET");
            generated.push("API_KEY_SALT");
            let fresh = StoredSecrets {
                jwt_secret: random_hex32(),
                api_key_salt: random_hex32(),
            };
            write_private(&config.data_dir, &path, &serde_json::to_vec_pretty(&fresh)?)?;
            fresh
        }
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    for (name, value) in [
        ("JWT_SECRET", &stored.jwt_secret),
        ("API_KEY_SALT", &stored.api_key_salt),
    ] {
        if let Some(why) = secret_weakness(value) {
            anyhow::bail!("{name} in {} {why}", path.display());
        }
    }
    if config.jwt_secret.is_none() {
        config.jwt_secret = Some(Secret::new(stored.jwt_secret));
    }
    if config.api_key_salt.is_none() {
        config.api_key_salt = Some(Secret::new(stored.api_key_salt));
    }
    Ok(generated)
}

/// Writes a file readable by the owner only; secrets must not be world-readable.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
