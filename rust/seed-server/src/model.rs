//! The model: a BERT from candle-transformers plus its tokenizer, loaded from a local folder
//! (never a hub), with sentence-transformers' pooling (mean over the attention mask, the first
//! token, or the max over the attention mask), then L2 normalisation when asked. For
//! all-MiniLM-L6-v2 (mean, normalised) this gives the vectors of
//! `SentenceTransformer(path).encode(texts)`. What the folder asks for is read by `folder.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Error as E, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, DTYPE};
use tokenizers::{Tokenizer, TruncationParams};

use crate::folder;

/// How inputs of one request are laid out for the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Padding {
    /// Pad a batch to its longest input (sentence-transformers' `padding=True`).
    Longest,
    /// Pad every batch to at least `max_seq_length` tokens (a tokenizer's fixed padding).
    /// `max-length` too: the spelling the Python launcher passes.
    #[value(name = "max_length", alias = "max-length")]
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

/// How the token vectors of one input become its sentence vector (sentence-transformers'
/// Pooling modes that this server implements).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooling {
    /// The mean of the token vectors under the attention mask.
    Mean,
    /// The first token's vector ([CLS]; inputs are padded on the right).
    Cls,
    /// Each dimension's max over the token vectors under the attention mask.
    Max,
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        }
    }

    /// The pooling of a sentence-transformers mode name, if this server implements it.
    pub fn from_mode(mode: &str) -> Option<Pooling> {
        match mode {
            "mean" => Some(Pooling::Mean),
            "cls" => Some(Pooling::Cls),
            "max" => Some(Pooling::Max),
            _ => None,
        }
    }
}

/// Tokenizer and pooling settings of a server (the same for every model copy it loads).
#[derive(Clone, Debug)]
pub struct ModelSettings {
    pub model_dir: PathBuf,
    pub padding: Padding,
    /// The server's default; a request to /embed may override it with `truncate`.
    pub truncation: bool,
    /// Tokens kept when truncating (special tokens included), as sentence-transformers'.
    pub max_seq_length: usize,
    pub pooling: Pooling,
    /// L2-normalise the pooled vector (the folder's Normalize module).
    pub normalize: bool,
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
        let dir: &Path = &settings.model_dir;
        let device = Device::Cpu;
        // Pooling and the modules were settled by `folder::resolve` before; the config is read
        // again here (with its refusals) so that every caller of `load` gets a BERT or an error.
        let config = folder::bert_config(dir)?;

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

    /// Sentence embeddings of `texts` (tokenisation included, as the article's `predict` did it
    /// under the lock). `truncate: None` means the server's default.
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

    /// Sentence embeddings of already tokenised inputs, laid out as `padding` says (not the
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
        Ok(pool_rows(
            &tokens,
            &mask,
            self.settings.pooling,
            self.settings.normalize,
        )?)
    }
}

/// The sentence vectors of a batch: `tokens` is the model's output [rows, width, dim], `mask`
/// its attention mask, row after row.
fn pool_rows(
    tokens: &Tensor,
    mask: &[u32],
    pooling: Pooling,
    normalize: bool,
) -> Result<Vec<Vec<f32>>> {
    let (rows, width, dim) = tokens.dims3()?;
    let flat: Vec<f32> = tokens.flatten_all()?.to_vec1()?;
    Ok((0..rows)
        .map(|row| {
            pool(
                &flat[row * width * dim..(row + 1) * width * dim],
                &mask[row * width..(row + 1) * width],
                dim,
                pooling,
                normalize,
            )
        })
        .collect())
}

/// sentence-transformers' Pooling, then its Normalize when asked (L2 norm clamped at 1e-12).
fn pool(tokens: &[f32], mask: &[u32], dim: usize, pooling: Pooling, normalize: bool) -> Vec<f32> {
    let mut out = match pooling {
        Pooling::Mean => mean(tokens, mask, dim),
        // Padding is on the right, so the first token is [CLS] in every row.
        Pooling::Cls => tokens[..dim].to_vec(),
        Pooling::Max => max(tokens, mask, dim),
    };
    if normalize {
        let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        out.iter_mut().for_each(|s| *s /= norm);
    }
    out
}

/// The mean of the token vectors under the attention mask (count clamped at 1e-9).
fn mean(tokens: &[f32], mask: &[u32], dim: usize) -> Vec<f32> {
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
    sum
}

/// Each dimension's max over the token vectors under the attention mask (padding counts as
/// -inf, as sentence-transformers masks it).
fn max(tokens: &[f32], mask: &[u32], dim: usize) -> Vec<f32> {
    let mut out = vec![f32::NEG_INFINITY; dim];
    for (vector, &m) in tokens.chunks_exact(dim).zip(mask) {
        if m != 0 {
            for (o, v) in out.iter_mut().zip(vector) {
                *o = o.max(*v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn pooling_ignores_padding_and_normalises() {
        // two tokens of dim 2 plus one padding token that must not count
        let tokens = [3.0, 0.0, 1.0, 4.0, 100.0, 100.0];
        let out = pool(&tokens, &[1, 1, 0], 2, Pooling::Mean, true);
        let (x, y) = (2.0f32, 2.0f32);
        let n = (x * x + y * y).sqrt();
        assert!((out[0] - x / n).abs() < 1e-6 && (out[1] - y / n).abs() < 1e-6);
    }

    /// Two rows of width 3, dim 2: the first has a padding token (huge values that must never
    /// show), the second none; negative values so that max pooling is not a matter of zeros.
    fn batch() -> (Tensor, Vec<u32>) {
        let tokens = Tensor::from_vec(
            vec![
                1.0f32, -2.0, 3.0, -4.0, 100.0, 100.0, // row 0: two tokens + padding
                -1.0, -5.0, 2.0, 6.0, -3.0, 1.0, // row 1: three tokens
            ],
            (2, 3, 2),
            &Device::Cpu,
        )
        .unwrap();
        (tokens, vec![1, 1, 0, 1, 1, 1])
    }

    #[test]
    fn mean_cls_and_max_pooling_of_a_tiny_batch() {
        let (tokens, mask) = batch();
        let mean = pool_rows(&tokens, &mask, Pooling::Mean, false).unwrap();
        assert!(close(&mean[0], &[2.0, -3.0]) && close(&mean[1], &[-2.0 / 3.0, 2.0 / 3.0]));
        let cls = pool_rows(&tokens, &mask, Pooling::Cls, false).unwrap();
        assert!(close(&cls[0], &[1.0, -2.0]) && close(&cls[1], &[-1.0, -5.0]));
        let max = pool_rows(&tokens, &mask, Pooling::Max, false).unwrap();
        assert!(close(&max[0], &[3.0, -2.0]) && close(&max[1], &[2.0, 6.0]));
    }

    #[test]
    fn normalisation_only_when_asked() {
        let (tokens, mask) = batch();
        let cls = pool_rows(&tokens, &mask, Pooling::Cls, true).unwrap();
        let n = 5f32.sqrt();
        assert!(close(&cls[0], &[1.0 / n, -2.0 / n]));
        let max = pool_rows(&tokens, &mask, Pooling::Max, true).unwrap();
        let n = 40f32.sqrt();
        assert!(close(&max[1], &[2.0 / n, 6.0 / n]));
    }
}
