//! What a model folder says about itself, read before any weight is loaded: its BERT config,
//! its sentence-transformers modules (pooling, normalisation) and its max_seq_length.
//!
//! The Python side resolves the same facts and passes them as flags, which win; they are read
//! here too so that the server started by hand serves a folder as sentence-transformers would,
//! and so that a folder this server cannot serve is refused in one line instead of served
//! wrong (an XLM-RoBERTa read as a BERT loads, and gives other vectors).

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use candle_transformers::models::bert::Config;
use serde_json::{Map, Value};

use crate::model::Pooling;

/// What the command line asked; `None` means "as the folder says".
#[derive(Clone, Copy, Debug, Default)]
pub struct Asked {
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    pub max_seq_length: Option<usize>,
}

/// The facts a server runs with, and what is worth a log line (a flag overriding the folder).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_seq_length: usize,
    /// `max_position_embeddings`: the longest input the model accepts.
    pub max_positions: usize,
    pub hidden_size: usize,
    pub notes: Vec<String>,
}

/// One entry of modules.json: its class (`type`) and its folder (`path`, "" for the root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub kind: String,
    pub path: String,
}

impl Module {
    /// The class name, without its Python module: `sentence_transformers.models.Pooling` and
    /// the newer `sentence_transformers.sentence_transformer.modules.pooling.Pooling` are both
    /// `Pooling`. Compared whole, so that `WeightedLayerPooling` is not taken for `Pooling`.
    fn class(&self) -> &str {
        self.kind.rsplit('.').next().unwrap_or(&self.kind)
    }

    fn is(&self, class: &str) -> bool {
        self.class() == class
    }
}

/// The pooling a folder asks for, in sentence-transformers' names ("mean", "cls", ...; several
/// are concatenated), and where that was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderPooling {
    pub modes: Vec<String>,
    pub source: String,
}

impl FolderPooling {
    fn name(&self) -> String {
        self.modes.join(" + ")
    }

    /// The pooling this server implements, if the folder's is one.
    fn supported(&self) -> Option<Pooling> {
        match self.modes.as_slice() {
            [mode] => Pooling::from_mode(mode),
            _ => None,
        }
    }
}

/// sentence-transformers' pooling modes, in the order its old booleans concatenate them.
const POOLING_KEYS: [(&str, &str); 6] = [
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
];

/// Check the folder and settle what the server runs with. Everything that would make it serve
/// wrong vectors is refused here, before the weights are read.
pub fn resolve(dir: &Path, asked: &Asked) -> Result<Resolved> {
    let modules = read_modules(dir)?;
    if let Some(modules) = &modules {
        check_modules(modules)?;
    }
    let config = bert_config(dir)?;
    let mut notes = Vec::new();
    let pooling = choose_pooling(
        asked.pooling,
        folder_pooling(dir, modules.as_deref()),
        &mut notes,
    )?;
    let normalize = choose_normalize(asked.normalize, modules.as_deref(), &mut notes);
    let max_seq_length = match asked.max_seq_length {
        Some(n) => check_max_seq_length(n, "--max-seq-length", config.max_position_embeddings)?,
        None => match folder_max_seq_length(dir)? {
            Some(n) => check_max_seq_length(
                n,
                "sentence_bert_config.json's max_seq_length",
                config.max_position_embeddings,
            )?,
            // As the Python side: no sentence-transformers config, the model's own limit.
            None => config.max_position_embeddings,
        },
    };
    Ok(Resolved {
        pooling,
        normalize,
        max_seq_length,
        max_positions: config.max_position_embeddings,
        hidden_size: config.hidden_size,
        notes,
    })
}

/// A JSON file, with one-line errors that name it (a missing file, or bytes that are not JSON).
fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{} not found", path.display()),
        _ => anyhow!("reading {}: {err}", path.display()),
    })?;
    serde_json::from_str(&text).map_err(|err| {
        anyhow!(
            "{} is not valid JSON (line {}, column {})",
            path.display(),
            err.line(),
            err.column()
        )
    })
}

/// modules.json's entries, or `None` for a plain transformers folder (no modules.json).
pub fn read_modules(dir: &Path) -> Result<Option<Vec<Module>>> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        return Ok(None);
    }
    let Value::Array(entries) = read_json(&path)? else {
        bail!("{}: not a list of modules", path.display());
    };
    let modules = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let text = |key: &str| entry.get(key).and_then(Value::as_str);
            let kind = text("type")
                .ok_or_else(|| anyhow!("{}: entry {index} has no 'type'", path.display()))?;
            Ok(Module {
                kind: kind.to_owned(),
                path: text("path").unwrap_or_default().to_owned(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(modules))
}

/// Refuse a module this server does not run: a Dense layer (or any other) after the pooling
/// would change the vectors, and skipping it would serve them wrong.
pub fn check_modules(modules: &[Module]) -> Result<()> {
    for module in modules {
        if !["Transformer", "Pooling", "Normalize"].contains(&module.class()) {
            let place = if module.path.is_empty() {
                "the folder's root"
            } else {
                &module.path
            };
            bail!("module '{}' ({place}) is not supported", module.kind);
        }
        if module.is("Transformer") && !module.path.is_empty() {
            // config.json, tokenizer.json and the weights are read from the folder's root only.
            bail!(
                "the Transformer module lives in '{}'; the Rust server reads it from the folder's \
                 root only",
                module.path
            );
        }
    }
    Ok(())
}

/// The folder's config.json as a candle BERT config; anything but a BERT is refused in one line.
pub fn bert_config(dir: &Path) -> Result<Config> {
    let path = dir.join("config.json");
    let Value::Object(fields) = read_json(&path)? else {
        bail!("{}: not a JSON object", path.display());
    };
    check_model_type(&fields)?;
    let mut full = bert_defaults();
    // A key the file leaves out (or sets to null) takes transformers' BertConfig default, as
    // transformers itself would load it.
    for (key, value) in fields {
        if !(value.is_null() && full.contains_key(&key)) {
            full.insert(key, value);
        }
    }
    map_activation(&mut full)?;
    check_fields(&full)?;
    serde_json::from_value(Value::Object(full)).map_err(|err| {
        anyhow!(
            "{}: not a BERT config this server reads ({err})",
            path.display()
        )
    })
}

/// Only a BERT is served: other encoders (XLM-RoBERTa, DistilBERT, MPNet) load into candle's BERT
/// with missing or misread weights, or not at all. An old config without model_type passes when
/// its architectures are BERT's.
pub fn check_model_type(fields: &Map<String, Value>) -> Result<()> {
    match fields.get("model_type") {
        Some(Value::String(kind)) if kind == "bert" => Ok(()),
        Some(Value::String(kind)) => {
            bail!("model_type '{kind}' is not supported by the Rust server (BERT only)")
        }
        _ if names_bert(fields) => Ok(()),
        _ => bail!("config.json names no model_type; the Rust server serves BERT only"),
    }
}

fn names_bert(fields: &Map<String, Value>) -> bool {
    match fields.get("architectures").and_then(Value::as_array) {
        Some(names) if !names.is_empty() => names
            .iter()
            .all(|name| name.as_str().is_some_and(|n| n.starts_with("Bert"))),
        _ => false,
    }
}

/// transformers' BertConfig defaults (candle's `Config::default()` is the same).
fn bert_defaults() -> Map<String, Value> {
    let defaults = serde_json::json!({
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    });
    match defaults {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// transformers' activation names as candle's BERT spells them; the tanh approximation of GELU
/// is candle's `GeluApproximate` (serialised lowercase, without a separator).
fn map_activation(full: &mut Map<String, Value>) -> Result<()> {
    let candle = match full.get("hidden_act").and_then(Value::as_str) {
        Some("gelu") => "gelu",
        Some("relu") => "relu",
        Some("gelu_new" | "gelu_pytorch_tanh") => "geluapproximate",
        Some(other) => {
            bail!("hidden_act '{other}' is not supported by the Rust server (gelu, gelu_new, relu)")
        }
        None => bail!("config.json: 'hidden_act' must be a string"),
    };
    full.insert("hidden_act".into(), candle.into());
    Ok(())
}

/// The values candle's BERT reads, each of the right kind, so that nothing reaches the
/// deserialiser that it would refuse in its own words.
fn check_fields(full: &Map<String, Value>) -> Result<()> {
    const WHOLE: [&str; 8] = [
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
        "pad_token_id",
    ];
    const REAL: [&str; 3] = ["hidden_dropout_prob", "initializer_range", "layer_norm_eps"];
    for key in WHOLE {
        if full[key].as_u64().is_none() {
            bail!(
                "config.json: '{key}' must be a whole number, not {}",
                full[key]
            );
        }
    }
    for key in REAL {
        if full[key].as_f64().is_none() {
            bail!("config.json: '{key}' must be a number, not {}", full[key]);
        }
    }
    match full["position_embedding_type"].as_str() {
        Some("absolute") => {}
        _ => bail!(
            "position_embedding_type {} is not supported by the Rust server (absolute only)",
            full["position_embedding_type"]
        ),
    }
    if full["max_position_embeddings"].as_u64() == Some(0) {
        bail!("config.json: 'max_position_embeddings' is 0");
    }
    Ok(())
}

/// The pooling the folder asks for: its Pooling module's config (found through modules.json),
/// or mean pooling for a plain transformers folder, the usual sentence-embedding choice.
pub fn folder_pooling(dir: &Path, modules: Option<&[Module]>) -> Result<FolderPooling> {
    let Some(modules) = modules else {
        return Ok(FolderPooling {
            modes: vec!["mean".into()],
            source: "no modules.json".into(),
        });
    };
    let Some(module) = modules.iter().find(|m| m.is("Pooling")) else {
        bail!("modules.json lists no Pooling module (token vectors, not a sentence embedding)");
    };
    let relative = Path::new(&module.path).join("config.json");
    let modes = pooling_modes(&read_json(&dir.join(&relative))?)
        .map_err(|err| anyhow!("{}: {err}", relative.display()))?;
    Ok(FolderPooling {
        modes,
        source: relative.display().to_string(),
    })
}

/// The modes of a Pooling config, in either format: sentence-transformers 6's
/// `"pooling_mode": "mean"` (or a list of modes, concatenated), or the older booleans
/// (`"pooling_mode_mean_tokens": true`, ...). None set means mean, as sentence-transformers.
pub fn pooling_modes(conf: &Value) -> Result<Vec<String>> {
    let known = |mode: &str| POOLING_KEYS.iter().any(|(_, m)| *m == mode);
    let modes: Vec<String> = match conf.get("pooling_mode") {
        Some(Value::String(mode)) => vec![mode.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("'pooling_mode' must name modes, not {item}"))
            })
            .collect::<Result<_>>()?,
        None | Some(Value::Null) => POOLING_KEYS
            .iter()
            .filter(|(key, _)| conf.get(*key).and_then(Value::as_bool).unwrap_or(false))
            .map(|(_, mode)| (*mode).to_owned())
            .collect(),
        Some(other) => bail!("'pooling_mode' must be a mode's name, not {other}"),
    };
    if let Some(unknown) = modes.iter().find(|mode| !known(mode)) {
        bail!("unknown pooling mode '{unknown}'");
    }
    Ok(if modes.is_empty() {
        vec!["mean".into()]
    } else {
        modes
    })
}

/// `--pooling` wins over the folder (the Python side has checked it), with a note when they
/// differ; without it, the folder's pooling, if this server implements it.
pub fn choose_pooling(
    asked: Option<Pooling>,
    folder: Result<FolderPooling>,
    notes: &mut Vec<String>,
) -> Result<Pooling> {
    match (asked, folder) {
        (Some(pooling), Ok(folder)) => {
            if folder.supported() != Some(pooling) {
                notes.push(format!(
                    "--pooling {} overrides the folder's pooling '{}' ({})",
                    pooling.as_str(),
                    folder.name(),
                    folder.source
                ));
            }
            Ok(pooling)
        }
        (Some(pooling), Err(err)) => {
            notes.push(format!(
                "--pooling {} is used; the folder's pooling could not be read: {err}",
                pooling.as_str()
            ));
            Ok(pooling)
        }
        (None, Ok(folder)) => folder.supported().ok_or_else(|| {
            anyhow!(
                "pooling '{}' ({}) is not implemented by the Rust server (mean, cls or max)",
                folder.name(),
                folder.source
            )
        }),
        (None, Err(err)) => Err(err),
    }
}

/// `--normalize` wins over the folder, with a note when they differ; the folder normalises when
/// modules.json lists a Normalize module.
pub fn choose_normalize(
    asked: Option<bool>,
    modules: Option<&[Module]>,
    notes: &mut Vec<String>,
) -> bool {
    let folder = modules.is_some_and(|m| m.iter().any(|m| m.is("Normalize")));
    match asked {
        Some(normalize) => {
            if normalize != folder {
                notes.push(format!(
                    "--normalize {normalize} overrides the folder ({})",
                    if folder {
                        "modules.json lists a Normalize module"
                    } else {
                        "no Normalize module"
                    }
                ));
            }
            normalize
        }
        None => folder,
    }
}

/// sentence_bert_config.json's max_seq_length, if the folder has one.
fn folder_max_seq_length(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join("sentence_bert_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    match read_json(&path)?.get("max_seq_length") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            anyhow!(
                "{}: 'max_seq_length' must be a whole number",
                path.display()
            )
        }),
    }
}

/// Truncating past the model's positions would index embeddings it does not have.
fn check_max_seq_length(n: usize, source: &str, positions: usize) -> Result<usize> {
    if n == 0 {
        bail!("{source} must be at least 1");
    }
    if n > positions {
        bail!("{source} {n} exceeds the model's max_position_embeddings ({positions})");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_transformers::models::bert::HiddenAct;
    use serde_json::json;
    use std::path::PathBuf;

    /// A fresh folder under the system's temp dir, removed when dropped.
    struct Fixture(PathBuf);

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir = std::env::temp_dir()
                .join(format!("seed-server-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Fixture(dir)
        }

        fn write(&self, relative: &str, value: &Value) -> &Fixture {
            let path = self.0.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, value.to_string()).unwrap();
            self
        }

        fn bert(&self) -> &Fixture {
            self.write(
                "config.json",
                &json!({"model_type": "bert", "hidden_size": 8, "max_position_embeddings": 16,
                        "hidden_act": "gelu", "num_attention_heads": 2}),
            )
        }

        fn modules(&self, types: &[(&str, &str)]) -> &Fixture {
            let entries: Vec<Value> = types
                .iter()
                .enumerate()
                .map(|(i, (kind, path))| {
                    json!({"idx": i, "name": i.to_string(), "path": path, "type": kind})
                })
                .collect();
            self.write("modules.json", &Value::Array(entries))
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const TRANSFORMER: (&str, &str) = ("sentence_transformers.models.Transformer", "");
    const POOLING: (&str, &str) = ("sentence_transformers.models.Pooling", "1_Pooling");
    const NORMALIZE: (&str, &str) = ("sentence_transformers.models.Normalize", "2_Normalize");

    fn error(result: Result<Resolved>) -> String {
        format!("{:#}", result.expect_err("should be refused"))
    }

    #[test]
    fn old_boolean_pooling_format() {
        let conf = |key: &str| {
            let mut c = json!({"word_embedding_dimension": 8, "pooling_mode_cls_token": false,
                               "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false,
                               "pooling_mode_mean_sqrt_len_tokens": false});
            c[key] = true.into();
            c
        };
        assert_eq!(
            pooling_modes(&conf("pooling_mode_cls_token")).unwrap(),
            ["cls"]
        );
        assert_eq!(
            pooling_modes(&conf("pooling_mode_mean_tokens")).unwrap(),
            ["mean"]
        );
        assert_eq!(
            pooling_modes(&conf("pooling_mode_max_tokens")).unwrap(),
            ["max"]
        );
        assert_eq!(
            pooling_modes(&conf("pooling_mode_lasttoken")).unwrap(),
            ["lasttoken"]
        );
        assert_eq!(
            pooling_modes(&conf("pooling_mode_weightedmean_tokens")).unwrap(),
            ["weightedmean"]
        );
        // None set: mean, as sentence-transformers; two set: concatenated, in its order.
        assert_eq!(
            pooling_modes(&json!({"pooling_mode_mean_tokens": false})).unwrap(),
            ["mean"]
        );
        let both = json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true});
        assert_eq!(pooling_modes(&both).unwrap(), ["cls", "mean"]);
    }

    #[test]
    fn new_string_pooling_format() {
        for mode in [
            "cls",
            "mean",
            "max",
            "mean_sqrt_len_tokens",
            "weightedmean",
            "lasttoken",
        ] {
            let conf =
                json!({"embedding_dimension": 8, "pooling_mode": mode, "include_prompt": true});
            assert_eq!(pooling_modes(&conf).unwrap(), [mode]);
        }
        // The new key wins over stale booleans; a list of one is that mode.
        let conf = json!({"pooling_mode": "cls", "pooling_mode_mean_tokens": true});
        assert_eq!(pooling_modes(&conf).unwrap(), ["cls"]);
        assert_eq!(
            pooling_modes(&json!({"pooling_mode": ["max"]})).unwrap(),
            ["max"]
        );
        let err = pooling_modes(&json!({"pooling_mode": "median"})).unwrap_err();
        assert_eq!(err.to_string(), "unknown pooling mode 'median'");
    }

    #[test]
    fn pooling_read_from_both_formats_through_modules_json() {
        let old = Fixture::new("old-format");
        old.bert()
            .modules(&[TRANSFORMER, POOLING, NORMALIZE])
            .write(
                "1_Pooling/config.json",
                &json!({"word_embedding_dimension": 8, "pooling_mode_cls_token": true,
                    "pooling_mode_mean_tokens": false}),
            );
        let resolved = resolve(&old.0, &Asked::default()).unwrap();
        assert_eq!((resolved.pooling, resolved.normalize), (Pooling::Cls, true));
        assert_eq!((resolved.hidden_size, resolved.max_positions), (8, 16));
        assert_eq!(resolved.max_seq_length, 16);

        // sentence-transformers 6, its pooling module in a folder of another name, no Normalize.
        let new = Fixture::new("new-format");
        new.bert()
            .modules(&[
                TRANSFORMER,
                (
                    "sentence_transformers.sentence_transformer.modules.Pooling",
                    "pool",
                ),
            ])
            .write(
                "pool/config.json",
                &json!({"embedding_dimension": 8, "pooling_mode": "mean"}),
            )
            .write("sentence_bert_config.json", &json!({"max_seq_length": 12}));
        let resolved = resolve(&new.0, &Asked::default()).unwrap();
        assert_eq!(
            (resolved.pooling, resolved.normalize),
            (Pooling::Mean, false)
        );
        assert_eq!(resolved.max_seq_length, 12);
        assert!(resolved.notes.is_empty());
    }

    #[test]
    fn folder_without_modules_json_is_mean_without_normalize() {
        let plain = Fixture::new("plain");
        plain.bert();
        let resolved = resolve(&plain.0, &Asked::default()).unwrap();
        assert_eq!(
            (resolved.pooling, resolved.normalize),
            (Pooling::Mean, false)
        );
    }

    #[test]
    fn flags_win_over_the_folder_with_a_note() {
        let folder = Fixture::new("flags");
        folder
            .bert()
            .modules(&[TRANSFORMER, POOLING, NORMALIZE])
            .write(
                "1_Pooling/config.json",
                &json!({"pooling_mode": "lasttoken"}),
            );
        let no_flags = error(resolve(&folder.0, &Asked::default()));
        assert_eq!(
            no_flags,
            "pooling 'lasttoken' (1_Pooling/config.json) is not implemented by the Rust server \
             (mean, cls or max)"
        );
        let asked = Asked {
            pooling: Some(Pooling::Max),
            normalize: Some(false),
            max_seq_length: Some(8),
        };
        let resolved = resolve(&folder.0, &asked).unwrap();
        assert_eq!(
            (resolved.pooling, resolved.normalize),
            (Pooling::Max, false)
        );
        assert_eq!(resolved.max_seq_length, 8);
        assert_eq!(resolved.notes.len(), 2);
        assert!(resolved.notes[0]
            .starts_with("--pooling max overrides the folder's pooling 'lasttoken'"));
        assert!(resolved.notes[1].starts_with("--normalize false overrides the folder"));
    }

    #[test]
    fn refuses_a_non_bert_model_type() {
        let folder = Fixture::new("xlmr");
        folder.write(
            "config.json",
            &json!({"model_type": "xlm-roberta", "hidden_size": 8, "max_position_embeddings": 514}),
        );
        assert_eq!(
            error(resolve(&folder.0, &Asked::default())),
            "model_type 'xlm-roberta' is not supported by the Rust server (BERT only)"
        );
        // DistilBERT's config has no hidden_size: refused by its type, not by a missing field.
        folder.write(
            "config.json",
            &json!({"model_type": "distilbert", "dim": 768}),
        );
        assert_eq!(
            error(resolve(&folder.0, &Asked::default())),
            "model_type 'distilbert' is not supported by the Rust server (BERT only)"
        );
    }

    #[test]
    fn refuses_a_dense_module() {
        let folder = Fixture::new("dense");
        folder.bert().modules(&[
            TRANSFORMER,
            POOLING,
            ("sentence_transformers.models.Dense", "2_Dense"),
            NORMALIZE,
        ]);
        assert_eq!(
            error(resolve(&folder.0, &Asked::default())),
            "module 'sentence_transformers.models.Dense' (2_Dense) is not supported"
        );
        // A look-alike name is not the Pooling module.
        folder.modules(&[
            TRANSFORMER,
            ("sentence_transformers.models.WeightedLayerPooling", "1_W"),
        ]);
        assert!(error(resolve(&folder.0, &Asked::default())).starts_with(
            "module 'sentence_transformers.models.WeightedLayerPooling' (1_W) is not supported"
        ));
    }

    #[test]
    fn refuses_missing_or_broken_config_and_long_max_seq_length() {
        let folder = Fixture::new("config");
        let missing = error(resolve(&folder.0, &Asked::default()));
        assert!(missing.ends_with("config.json not found"), "{missing}");
        std::fs::write(folder.0.join("config.json"), "{not json").unwrap();
        let broken = error(resolve(&folder.0, &Asked::default()));
        assert!(
            broken.ends_with("config.json is not valid JSON (line 1, column 2)"),
            "{broken}"
        );

        folder.bert();
        let asked = Asked {
            max_seq_length: Some(17),
            ..Asked::default()
        };
        assert_eq!(
            error(resolve(&folder.0, &asked)),
            "--max-seq-length 17 exceeds the model's max_position_embeddings (16)"
        );
        folder.write("sentence_bert_config.json", &json!({"max_seq_length": 64}));
        assert_eq!(
            error(resolve(&folder.0, &Asked::default())),
            "sentence_bert_config.json's max_seq_length 64 exceeds the model's \
             max_position_embeddings (16)"
        );
    }

    #[test]
    fn bert_config_takes_transformers_defaults_and_refuses_bad_values_plainly() {
        let folder = Fixture::new("defaults");
        folder.write(
            "config.json",
            &json!({"model_type": "bert", "hidden_act": "gelu_new"}),
        );
        let config = bert_config(&folder.0).unwrap();
        assert_eq!(
            (config.hidden_size, config.max_position_embeddings),
            (768, 512)
        );
        assert_eq!(config.hidden_act, HiddenAct::GeluApproximate);
        folder.write(
            "config.json",
            &json!({"model_type": "bert", "hidden_act": "silu"}),
        );
        assert_eq!(
            format!("{:#}", bert_config(&folder.0).unwrap_err()),
            "hidden_act 'silu' is not supported by the Rust server (gelu, gelu_new, relu)"
        );
        folder.write(
            "config.json",
            &json!({"model_type": "bert", "hidden_size": "wide"}),
        );
        assert_eq!(
            format!("{:#}", bert_config(&folder.0).unwrap_err()),
            "config.json: 'hidden_size' must be a whole number, not \"wide\""
        );
        // An old config without model_type, but a BERT architecture.
        folder.write("config.json", &json!({"architectures": ["BertModel"]}));
        assert!(bert_config(&folder.0).is_ok());
    }
}
