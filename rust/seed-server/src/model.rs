//! The model: a BERT from candle-transformers plus its tokenizer, loaded from a local folder
//! (never a hub), with sentence-transformers' pooling: mean over the attention mask, then L2
//! normalisation. For all-MiniLM-L6-v2 this gives the vectors of
//! `SentenceTransformer(path).encode(texts, normalize_embeddings=True)`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Error as E, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use tokenizers::{Tokenizer, TruncationParams};

/// How inputs of one request are laid out for the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Padding {
    /// Pad a batch to its longest input (sentence-transformers' `padding=True`).
    Longest,
    /// Pad every batch to at least `max_seq_length` tokens (a tokenizer's fixed padding).
    #[value(name = "max_length")]
    MaxLength,
    /// Never pad: each input of a batch gets its own forward pass (the article's tokenizer,
    /// `with_padding(None)`).
    #[value(skip)]
    None,
}

impl Padding {
    pub fn as_str(self) -> &'static str {
        match self {
            Padding::Longest => "longest",
            Padding::MaxLength => "max_length",
            Padding::None => "none",
        }
    }
}

/// Tokenizer settings of a server (the same for every model copy it loads).
#[derive(Clone, Debug)]
pub struct ModelSettings {
    pub model_dir: PathBuf,
    pub padding: Padding,
    /// The server's default; a request to /embed may override it with `truncate`.
    pub truncation: bool,
    /// Tokens kept when truncating (special tokens included), as sentence-transformers'.
    pub max_seq_length: usize,
}

/// Where `Bert::embed_timed` spent its time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    pub tokenize: Duration,
    /// Forward passes and pooling.
    pub forward: Duration,
}

/// Why a batch could not be embedded.
#[derive(Debug)]
pub enum EmbedError {
    /// An input has more tokens than the model has positions and truncation is off.
    TooLong {
        tokens: usize,
        limit: usize,
    },
    Other(E),
}

impl From<E> for EmbedError {
    fn from(err: E) -> Self {
        EmbedError::Other(err)
    }
}

impl From<candle_core::Error> for EmbedError {
    fn from(err: candle_core::Error) -> Self {
        EmbedError::Other(err.into())
    }
}

/// The positions a BERT config accepts (`max_position_embeddings`).
pub fn max_positions(model_dir: &Path) -> Result<usize> {
    Ok(read_config(model_dir)?.max_position_embeddings)
}

fn read_config(model_dir: &Path) -> Result<Config> {
    let path = model_dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Refuse folders whose sentence-transformers pooling is not mean pooling: this server only
/// does mean pooling and would silently give other vectors.
fn check_pooling(model_dir: &Path) -> Result<()> {
    let path = model_dir.join("1_Pooling").join("config.json");
    if !path.is_file() {
        return Ok(()); // a plain transformers folder: mean pooling is the usual choice
    }
    let conf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let flag = |key: &str| conf.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    if !flag("pooling_mode_mean_tokens")
        || flag("pooling_mode_cls_token")
        || flag("pooling_mode_max_tokens")
    {
        bail!("{}: only mean pooling is supported", path.display());
    }
    Ok(())
}

pub struct Bert {
    model: BertModel,
    /// Truncates to `max_seq_length`; never pads (padding is done here, per batch).
    truncating: Tokenizer,
    /// Neither truncates nor pads: inputs longer than the model's positions are refused.
    untruncated: Tokenizer,
    device: Device,
    settings: ModelSettings,
    pad_id: u32,
    pub max_positions: usize,
    pub hidden_size: usize,
}

impl Bert {
    pub fn load(settings: &ModelSettings) -> Result<Bert> {
        let dir = &settings.model_dir;
        let device = Device::Cpu;
        let config = read_config(dir)?;
        check_pooling(dir)?;

        let tokenizer_file = dir.join("tokenizer.json");
        let mut base = Tokenizer::from_file(&tokenizer_file)
            .map_err(E::msg)
            .with_context(|| format!("loading {}", tokenizer_file.display()))?;
        // tokenizer.json of all-MiniLM-L6-v2 pads to a fixed 128 and truncates at 128: drop both
        // and apply ours.
        base.with_padding(None);
        base.with_truncation(None).map_err(E::msg)?;
        let untruncated = base.clone();
        let mut truncating = base;
        truncating
            .with_truncation(Some(TruncationParams {
                max_length: settings.max_seq_length,
                ..Default::default()
            }))
            .map_err(E::msg)?;
        let pad_id = untruncated
            .token_to_id("[PAD]")
            .unwrap_or(config.pad_token_id as u32);

        let safetensors = dir.join("model.safetensors");
        let pth = dir.join("pytorch_model.bin");
        let vb = if safetensors.is_file() {
            // SAFETY: the file is not modified while mapped (the usual candle caveat).
            unsafe { VarBuilder::from_mmaped_safetensors(&[&safetensors], DTYPE, &device)? }
        } else if pth.is_file() {
            VarBuilder::from_pth(&pth, DTYPE, &device)?
        } else {
            bail!(
                "{}: neither model.safetensors nor pytorch_model.bin",
                dir.display()
            );
        };
        let model = BertModel::load(vb, &config).context("loading the BERT weights")?;
        Ok(Bert {
            model,
            truncating,
            untruncated,
            device,
            settings: settings.clone(),
            pad_id,
            max_positions: config.max_position_embeddings,
            hidden_size: config.hidden_size,
        })
    }

    /// Token ids of one input, special tokens included.
    pub fn tokenize(&self, text: &str, truncate: bool) -> Result<Vec<u32>, EmbedError> {
        let tokenizer = if truncate {
            &self.truncating
        } else {
            &self.untruncated
        };
        let ids = tokenizer
            .encode(text, true)
            .map_err(E::msg)?
            .get_ids()
            .to_vec();
        if ids.len() > self.max_positions {
            return Err(EmbedError::TooLong {
                tokens: ids.len(),
                limit: self.max_positions,
            });
        }
        Ok(ids)
    }

    /// Normalised sentence embeddings of `texts` (tokenisation included, as the article's
    /// `predict` did it under the lock). `truncate: None` means the server's default.
    pub fn embed(
        &self,
        texts: &[String],
        truncate: Option<bool>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_timed(texts, truncate)
            .map(|(vectors, _)| vectors)
    }

    /// `embed`, with the time it spent tokenising and in the forward passes (with pooling).
    pub fn embed_timed(
        &self,
        texts: &[String],
        truncate: Option<bool>,
    ) -> Result<(Vec<Vec<f32>>, Phases), EmbedError> {
        let truncate = truncate.unwrap_or(self.settings.truncation);
        let started = Instant::now();
        let batch = texts
            .iter()
            .map(|t| self.tokenize(t, truncate))
            .collect::<Result<Vec<_>, _>>()?;
        let tokenized = Instant::now();
        let vectors = self.embed_ids(&batch, self.settings.padding)?;
        let phases = Phases {
            tokenize: tokenized - started,
            forward: tokenized.elapsed(),
        };
        Ok((vectors, phases))
    }

    /// Normalised embeddings of already tokenised inputs, laid out as `padding` says (not the
    /// server's setting: the bench compares layouts on one loaded model).
    pub fn embed_ids(
        &self,
        batch: &[Vec<u32>],
        padding: Padding,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if padding == Padding::None {
            // No padding at all: one forward pass per input.
            let mut out = Vec::with_capacity(batch.len());
            for ids in batch {
                out.extend(self.forward(std::slice::from_ref(ids), padding)?);
            }
            return Ok(out);
        }
        self.forward(batch, padding)
    }

    /// One forward pass over a batch of token ids, padded to a common width, then pooling.
    fn forward(&self, batch: &[Vec<u32>], padding: Padding) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = batch.len();
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        let width = match padding {
            Padding::MaxLength => longest
                .max(self.settings.max_seq_length)
                .min(self.max_positions),
            Padding::Longest | Padding::None => longest,
        };
        let mut ids = vec![self.pad_id; rows * width];
        let mut mask = vec![0u32; rows * width];
        for (row, each) in batch.iter().enumerate() {
            ids[row * width..row * width + each.len()].copy_from_slice(each);
            mask[row * width..row * width + each.len()].fill(1);
        }
        let input_ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let token_type_ids = input_ids.zeros_like()?;
        let attention_mask = Tensor::from_vec(mask.clone(), (rows, width), &self.device)?;
        let tokens = self
            .model
            .forward(&input_ids, &token_type_ids, Some(&attention_mask))?;
        let dim = self.hidden_size;
        let flat: Vec<f32> = tokens.flatten_all()?.to_vec1()?;
        Ok((0..rows)
            .map(|row| {
                pool(
                    &flat[row * width * dim..(row + 1) * width * dim],
                    &mask[row * width..(row + 1) * width],
                    dim,
                )
            })
            .collect())
    }
}

/// sentence-transformers' Pooling(mean) then Normalize: the mean of the token vectors under the
/// attention mask (count clamped at 1e-9), divided by its L2 norm (clamped at 1e-12).
fn pool(tokens: &[f32], mask: &[u32], dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    let mut count = 0f32;
    for (vector, &m) in tokens.chunks_exact(dim).zip(mask) {
        if m != 0 {
            count += 1.0;
            for (s, v) in sum.iter_mut().zip(vector) {
                *s += v;
            }
        }
    }
    let count = count.max(1e-9);
    sum.iter_mut().for_each(|s| *s /= count);
    let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|s| *s /= norm);
    sum
}

#[cfg(test)]
mod tests {
    use super::pool;

    #[test]
    fn pooling_ignores_padding_and_normalises() {
        // two tokens of dim 2 plus one padding token that must not count
        let tokens = [3.0, 0.0, 1.0, 4.0, 100.0, 100.0];
        let out = pool(&tokens, &[1, 1, 0], 2);
        let (x, y) = (2.0f32, 2.0f32);
        let n = (x * x + y * y).sqrt();
        assert!((out[0] - x / n).abs() < 1e-6 && (out[1] - y / n).abs() < 1e-6);
    }
}
