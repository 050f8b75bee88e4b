//! Sounds: prompts stored as 8000 Hz mono 16-bit PCM WAV files.
//!
//! Owns: loading a WAV file into samples (refusing, with a message that
//! names the file and the problem, anything in another format), the
//! [`SoundLibrary`] that resolves sound names such as `vm-intro` or
//! `digits/5` inside its directories and caches what it loaded, and the
//! English prompt names for speaking digits and numbers.
//!
//! Must not: play anything (see [`super::player`]) or let a name reach a
//! file outside the library's directories.
//!
//! # Prompt names
//!
//! [`say_digits`] and [`say_number`] return names laid out like the
//! `asterisk-core-sounds-en-wav` package's English prompts: `digits/0` to
//! `digits/20`, `digits/30` to `digits/90` by tens, `digits/hundred`,
//! `digits/thousand`, `digits/million`, `digits/billion`, `digits/star`,
//! `digits/pound` and `letters/a` to `letters/d`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The one sample rate sounds may have.
pub const SAMPLE_RATE_HZ: u32 = 8000;

/// Files larger than this (about an hour of audio) are refused.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Longest sound name accepted.
const MAX_NAME: usize = 200;

/// Why a sound could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SoundError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A readable WAV file in another format.
    #[error("{}: {problem}, expected 8000 Hz mono 16-bit PCM", path.display())]
    Format { path: PathBuf, problem: String },
    /// Not a WAV file, or a broken one.
    #[error("{}: {problem}", path.display())]
    Damaged { path: PathBuf, problem: String },
    #[error("sound name {name:?} refused: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("sound {name:?} not found in {dirs}")]
    NotFound { name: String, dirs: String },
}

/// A loaded sound: 8000 Hz mono 16-bit samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sound {
    samples: Vec<i16>,
}

impl Sound {
    /// Reads a WAV file; anything but 8000 Hz mono 16-bit PCM is refused.
    pub fn load(path: impl AsRef<Path>) -> Result<Sound, SoundError> {
        let path = path.as_ref();
        let io = |source| SoundError::Io {
            path: path.to_path_buf(),
            source,
        };
        let damaged = |problem: String| SoundError::Damaged {
            path: path.to_path_buf(),
            problem,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_FILE_BYTES {
            return Err(damaged(format!("file too large ({size} bytes)")));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let header = WavHeader::inspect(&bytes).map_err(damaged)?;
        if let Some(problem) = header.format_problems() {
            return Err(SoundError::Format {
                path: path.to_path_buf(),
                problem,
            });
        }
        let mut reader = hound::WavReader::new(Cursor::new(bytes))
            .map_err(|e| damaged(format!("unreadable WAV: {e}")))?;
        let samples = reader
            .samples::<i16>()
            .collect::<Result<Vec<i16>, _>>()
            .map_err(|e| damaged(format!("unreadable samples: {e}")))?;
        Ok(Sound { samples })
    }

    /// A sound made of these samples (8000 Hz mono).
    pub fn from_samples(samples: Vec<i16>) -> Sound {
        Sound { samples }
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Length in milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE_HZ)
    }
}

/// What a WAV file's header says, read without trusting it.
#[derive(Debug, Clone, Copy)]
struct WavHeader {
    format_tag: u16,
    channels: u16,
    sample_rate: u32,
    bits: u16,
}

/// WAVE format tags (RFC 2361).
const FORMAT_PCM: u16 = 0x0001;
const FORMAT_FLOAT: u16 = 0x0003;
const FORMAT_ALAW: u16 = 0x0006;
const FORMAT_MULAW: u16 = 0x0007;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

impl WavHeader {
    /// Walks the RIFF chunks; an error describes what is broken.
    fn inspect(bytes: &[u8]) -> Result<WavHeader, String> {
        if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
            return Err("not a WAV file (no RIFF/WAVE header)".to_string());
        }
        let mut header = None;
        let mut at = 12usize;
        while let Some(chunk) = at.checked_add(8).and_then(|end| bytes.get(at..end)) {
            let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            let body_at = at + 8;
            let present = bytes.len() - body_at;
            match &chunk[..4] {
                b"fmt " => {
                    let body = &bytes[body_at..body_at + (size as usize).min(present)];
                    header = Some(Self::parse_fmt(body)?);
                }
                b"data" => {
                    let header = header.ok_or_else(|| "data before the fmt chunk".to_string())?;
                    if size as usize > present {
                        return Err(format!(
                            "truncated: data chunk declares {size} bytes, only {present} present"
                        ));
                    }
                    return Ok(header);
                }
                _ => {}
            }
            at = body_at
                .saturating_add(size as usize)
                .saturating_add(size as usize % 2);
        }
        Err(match header {
            None => "no fmt chunk".to_string(),
            Some(_) => "no data chunk".to_string(),
        })
    }

    fn parse_fmt(body: &[u8]) -> Result<WavHeader, String> {
        let field = |at: usize, len: usize| {
            body.get(at..at + len)
                .ok_or_else(|| "fmt chunk too short".to_string())
        };
        let u16_at = |at| field(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let mut format_tag = u16_at(0)?;
        if format_tag == FORMAT_EXTENSIBLE {
            // The real tag opens the sub-format GUID.
            format_tag = u16_at(24)?;
        }
        let rate = field(4, 4)?;
        Ok(WavHeader {
            format_tag,
            channels: u16_at(2)?,
            sample_rate: u32::from_le_bytes([rate[0], rate[1], rate[2], rate[3]]),
            bits: u16_at(14)?,
        })
    }

    /// Everything that differs from 8000 Hz mono 16-bit PCM, or `None`.
    fn format_problems(&self) -> Option<String> {
        let mut problems = Vec::new();
        if self.sample_rate != SAMPLE_RATE_HZ {
            problems.push(format!("sample rate {} Hz", self.sample_rate));
        }
        if self.channels != 1 {
            problems.push(format!("{} channels", self.channels));
        }
        match self.format_tag {
            FORMAT_PCM if self.bits == 16 => {}
            FORMAT_PCM => problems.push(format!("{}-bit samples", self.bits)),
            FORMAT_FLOAT => problems.push(format!("{}-bit float samples", self.bits)),
            FORMAT_MULAW => problems.push("µ-law encoding".to_string()),
            FORMAT_ALAW => problems.push("A-law encoding".to_string()),
            tag => problems.push(format!("encoding {tag:#06x}")),
        }
        (!problems.is_empty()).then(|| problems.join(", "))
    }
}

/// Sounds by name, from a list of directories searched in order, loaded
/// once and shared.
#[derive(Debug)]
pub struct SoundLibrary {
    dirs: Vec<PathBuf>,
    cache: Mutex<HashMap<String, Arc<Sound>>>,
}

impl SoundLibrary {
    pub fn new(dirs: Vec<PathBuf>) -> SoundLibrary {
        SoundLibrary {
            dirs,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The sound called `name` (`vm-intro`, `digits/5`): `<dir>/<name>.wav`
    /// in the first directory that has it. Names are relative paths of
    /// letters, digits, `-`, `_` and `.`, separated by `/`; `.`, `..` and
    /// empty parts are refused.
    pub fn get(&self, name: &str) -> Result<Arc<Sound>, SoundError> {
        check_name(name)?;
        if let Some(sound) = self.lock().get(name) {
            return Ok(Arc::clone(sound));
        }
        let path = self.resolve(name)?;
        let sound = Arc::new(Sound::load(&path)?);
        let mut cache = self.lock();
        let cached = cache.entry(name.to_string()).or_insert(sound);
        Ok(Arc::clone(cached))
    }

    /// The file a valid name stands for.
    fn resolve(&self, name: &str) -> Result<PathBuf, SoundError> {
        let file = format!("{name}.wav");
        self.dirs
            .iter()
            .map(|dir| dir.join(&file))
            .find(|path| path.is_file())
            .ok_or_else(|| {
                let mut dirs = String::new();
                for (i, dir) in self.dirs.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    let _ = write!(dirs, "{sep}{}", dir.display());
                }
                SoundError::NotFound {
                    name: name.to_string(),
                    dirs: if dirs.is_empty() {
                        "no directory".into()
                    } else {
                        dirs
                    },
                }
            })
    }

    /// Forgets every loaded sound, so that changed files are read again.
    pub fn clear_cache(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Sound>>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn check_name(name: &str) -> Result<(), SoundError> {
    let refuse = |reason| {
        Err(SoundError::BadName {
            name: name.chars().take(MAX_NAME).collect(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return refuse("empty or too long");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    if !name.chars().all(allowed) {
        return refuse("only letters, digits, '-', '_', '.' and '/' are allowed");
    }
    let mut parts = Path::new(name).components();
    let all_normal = parts.all(|c| matches!(c, Component::Normal(_)));
    if name.starts_with('/') || !all_normal || name.split('/').any(|p| p.is_empty() || p == ".") {
        return refuse("must be a relative path without '.', '..' or empty parts");
    }
    Ok(())
}

/// The prompts that read out `digits` one by one: `0`–`9`, `*`, `#` and
/// `A`–`D` (any case); other characters are skipped.
pub fn say_digits(digits: &str) -> Vec<String> {
    digits
        .chars()
        .filter_map(|c| match c.to_ascii_lowercase() {
            d @ '0'..='9' => Some(format!("digits/{d}")),
            '*' => Some("digits/star".to_string()),
            '#' => Some("digits/pound".to_string()),
            l @ 'a'..='d' => Some(format!("letters/{l}")),
            _ => None,
        })
        .collect()
}

/// The prompts that say `n` in English: 205 is `digits/2`,
/// `digits/hundred`, `digits/5`; 1_000_042 is `digits/1`,
/// `digits/million`, `digits/40`, `digits/2`.
pub fn say_number(n: u64) -> Vec<String> {
    let mut names = Vec::new();
    if n == 0 {
        names.push("digits/0".to_string());
    } else {
        push_number(n, &mut names);
    }
    names
}

fn push_number(n: u64, names: &mut Vec<String>) {
    const SCALES: [(u64, &str); 4] = [
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1_000, "thousand"),
        (100, "hundred"),
    ];
    if let Some(&(scale, word)) = SCALES.iter().find(|(scale, _)| n >= *scale) {
        push_number(n / scale, names);
        names.push(format!("digits/{word}"));
        if n % scale > 0 {
            push_number(n % scale, names);
        }
    } else if n < 20 {
        names.push(format!("digits/{n}"));
    } else {
        names.push(format!("digits/{}", n / 10 * 10));
        if n % 10 > 0 {
            names.push(format!("digits/{}", n % 10));
        }
    }
}

#[cfg(test)]
#[path = "sound_tests.rs"]
mod tests;
