//! Development secrets: generated once into the data directory so restarts keep keys and
//! sessions valid. Production never comes here; it refuses to start without real secrets.

use std::fs;
use std::io::Write;
use std::path::Path;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{secret_weakness, AuthKeys, Config, GivenKeys, Secret};

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

/// Resolves the signing keys: the ones given, and any missing one from (or generated into)
/// `<data_dir>/dev-secrets.json`. Returns the configuration with its keys and the names of
/// the secrets that were newly generated, so the caller can warn.
pub fn resolve_keys(config: Config<GivenKeys>) -> anyhow::Result<(Config, Vec<&'static str>)> {
    let GivenKeys {
        jwt_secret,
        api_key_salt,
    } = config.auth.keys.clone();
    if let (Some(jwt_secret), Some(api_key_salt)) = (jwt_secret.clone(), api_key_salt.clone()) {
        let keys = AuthKeys {
            jwt_secret,
            api_key_salt,
        };
        return Ok((config.with_keys(keys), Vec::new()));
    }
    anyhow::ensure!(
        !config.is_production(),
        "production never generates secrets; set JWT_SECRET and API_KEY_SALT"
    );
    let (stored, generated) = load_or_generate(&config.data_dir)?;
    let keys = AuthKeys {
        jwt_secret: jwt_secret.unwrap_or_else(|| Secret::new(stored.jwt_secret)),
        api_key_salt: api_key_salt.unwrap_or_else(|| Secret::new(stored.api_key_salt)),
    };
    Ok((config.with_keys(keys), generated))
}

/// The development secrets of `data_dir`, generated on first use.
fn load_or_generate(data_dir: &Path) -> anyhow::Result<(StoredSecrets, Vec<&'static str>)> {
    let path = data_dir.join(SECRETS_FILE);
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
            write_private(data_dir, &path, &serde_json::to_vec_pretty(&fresh)?)?;
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
    Ok((stored, generated))
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GIVEN: &str = "5f0c1e9a7b3d42c8a6e1f0b9d8c7a6e5f4d3c2b1";

    fn parsed(pairs: &[(&str, &str)]) -> Config<GivenKeys> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env_map(&env).unwrap()
    }

    #[test]
    fn given_keys_are_kept_and_missing_ones_are_generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("preflight-secrets-{}", uuid::Uuid::new_v4()));
        let data_dir = dir.display().to_string();
        let (config, generated) = resolve_keys(parsed(&[
            ("PREFLIGHT_DATA_DIR", &data_dir),
            ("JWT_SECRET", GIVEN),
        ]))
        .unwrap();
        assert_eq!(generated, ["JWT_SECRET", "API_KEY_SALT"]);
        assert_eq!(
            config.auth.keys.jwt_secret.expose(),
            GIVEN,
            "a given key wins"
        );
        let salt = config.auth.keys.api_key_salt.expose().to_string();
        assert!(secret_weakness(&salt).is_none());

        let (again, generated) =
            resolve_keys(parsed(&[("PREFLIGHT_DATA_DIR", &data_dir)])).unwrap();
        assert!(generated.is_empty(), "the file is reused");
        assert_eq!(again.auth.keys.api_key_salt.expose(), salt);
        assert_ne!(again.auth.keys.jwt_secret.expose(), GIVEN);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
