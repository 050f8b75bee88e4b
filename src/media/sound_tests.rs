//! Tests of sound loading, the library and prompt naming, on WAV files
//! written into a temporary directory.

use super::*;
use crate::media::player::{Player, Playlist};
use crate::media::tones::ToneProfile;
use hound::{SampleFormat, WavSpec, WavWriter};
use tempfile::TempDir;

fn spec(channels: u16, sample_rate: u32, bits: u16, format: SampleFormat) -> WavSpec {
    WavSpec {
        channels,
        sample_rate,
        bits_per_sample: bits,
        sample_format: format,
    }
}

const GOOD: WavSpec = WavSpec {
    channels: 1,
    sample_rate: 8000,
    bits_per_sample: 16,
    sample_format: SampleFormat::Int,
};

/// Writes `samples` as a 16-bit WAV at `dir/name`; returns the path.
fn write_wav(dir: &Path, name: &str, samples: &[i16]) -> PathBuf {
    write_with(dir, name, GOOD, |w| {
        for &s in samples {
            w.write_sample(s).expect("write");
        }
    })
}

fn write_with(
    dir: &Path,
    name: &str,
    spec: WavSpec,
    body: impl FnOnce(&mut WavWriter<std::io::BufWriter<std::fs::File>>),
) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    let mut writer = WavWriter::create(&path, spec).expect("create");
    body(&mut writer);
    writer.finalize().expect("finalize");
    path
}

/// A G.711 WAV file (format tag 6 or 7), which hound cannot write.
fn write_g711_wav(dir: &Path, name: &str, tag: u16) -> PathBuf {
    let data = [0xFFu8; 80];
    let mut bytes = Vec::new();
    bytes.extend(b"RIFF");
    bytes.extend((4 + 26 + 8 + data.len() as u32).to_le_bytes());
    bytes.extend(b"WAVEfmt ");
    bytes.extend(18u32.to_le_bytes());
    bytes.extend(tag.to_le_bytes());
    bytes.extend(1u16.to_le_bytes()); // channels
    bytes.extend(8000u32.to_le_bytes());
    bytes.extend(8000u32.to_le_bytes()); // bytes per second
    bytes.extend(1u16.to_le_bytes()); // block align
    bytes.extend(8u16.to_le_bytes()); // bits
    bytes.extend(0u16.to_le_bytes()); // extension size
    bytes.extend(b"data");
    bytes.extend((data.len() as u32).to_le_bytes());
    bytes.extend(data);
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn message(result: Result<Sound, SoundError>) -> String {
    result.expect_err("must be refused").to_string()
}

#[test]
fn loads_8000_hz_mono_16_bit() {
    let dir = TempDir::new().expect("tempdir");
    let samples: Vec<i16> = (0..1600).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
    let path = write_wav(dir.path(), "ok.wav", &samples);
    let sound = Sound::load(&path).expect("loads");
    assert_eq!(sound.samples(), &samples[..]);
    assert_eq!(sound.duration_ms(), 200);
}

#[test]
fn other_formats_are_refused_with_the_reason() {
    let dir = TempDir::new().expect("tempdir");
    let d = dir.path();
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write_with(d, "cd.wav", spec(1, 44100, 16, SampleFormat::Int), |w| {
                w.write_sample(0i16).expect("write")
            }),
            "sample rate 44100 Hz",
        ),
        (
            write_with(d, "stereo.wav", spec(2, 8000, 16, SampleFormat::Int), |w| {
                w.write_sample(0i16).expect("write");
                w.write_sample(0i16).expect("write");
            }),
            "2 channels",
        ),
        (
            write_with(d, "both.wav", spec(2, 16000, 16, SampleFormat::Int), |_| {}),
            "sample rate 16000 Hz, 2 channels",
        ),
        (
            write_with(d, "8bit.wav", spec(1, 8000, 8, SampleFormat::Int), |w| {
                w.write_sample(0i8).expect("write")
            }),
            "8-bit samples",
        ),
        (
            write_with(
                d,
                "float.wav",
                spec(1, 8000, 32, SampleFormat::Float),
                |w| w.write_sample(0.5f32).expect("write"),
            ),
            "32-bit float samples",
        ),
        (write_g711_wav(d, "ulaw.wav", 7), "µ-law encoding"),
        (write_g711_wav(d, "alaw.wav", 6), "A-law encoding"),
    ];
    for (path, problem) in cases {
        let expected = format!(
            "{}: {problem}, expected 8000 Hz mono 16-bit PCM",
            path.display()
        );
        assert_eq!(message(Sound::load(&path)), expected);
    }
}

#[test]
fn broken_files_are_refused_with_the_reason() {
    let dir = TempDir::new().expect("tempdir");
    let d = dir.path();
    let good = write_wav(d, "good.wav", &[7; 800]);
    let bytes = std::fs::read(&good).expect("read");

    let truncated = d.join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() - 600]).expect("write");
    let text = d.join("text.wav");
    std::fs::write(&text, "this is not audio").expect("write");
    let empty = d.join("empty.wav");
    std::fs::write(&empty, b"").expect("write");
    let headless = d.join("headless.wav");
    std::fs::write(&headless, b"RIFF\x04\x00\x00\x00WAVE").expect("write");
    let short_fmt = d.join("short-fmt.wav");
    std::fs::write(
        &short_fmt,
        b"RIFF\x10\x00\x00\x00WAVEfmt \x04\x00\x00\x00\x01\x00\x01\x00",
    )
    .expect("write");

    let cases = [
        (
            &truncated,
            "truncated: data chunk declares 1600 bytes, only 1000 present",
        ),
        (&text, "not a WAV file (no RIFF/WAVE header)"),
        (&empty, "not a WAV file (no RIFF/WAVE header)"),
        (&headless, "no fmt chunk"),
        (&short_fmt, "fmt chunk too short"),
    ];
    for (path, problem) in cases {
        let expected = format!("{}: {problem}", path.display());
        assert_eq!(message(Sound::load(path)), expected);
    }
    let missing = d.join("missing.wav");
    let err = message(Sound::load(&missing));
    assert!(
        err.starts_with(&format!("{}: ", missing.display())),
        "{err}"
    );
    assert!(matches!(
        Sound::load(d),
        Err(SoundError::Damaged { .. } | SoundError::Io { .. })
    ));
}

#[test]
fn the_library_searches_its_directories_in_order_and_caches() {
    let dir = TempDir::new().expect("tempdir");
    let (custom, stock) = (dir.path().join("custom"), dir.path().join("stock"));
    write_wav(&custom, "vm-intro.wav", &[1; 80]);
    write_wav(&stock, "vm-intro.wav", &[2; 80]);
    write_wav(&stock, "digits/5.wav", &[5; 80]);
    let library = SoundLibrary::new(vec![custom.clone(), stock.clone()]);

    let intro = library.get("vm-intro").expect("found");
    assert_eq!(intro.samples()[0], 1, "the first directory wins");
    assert_eq!(library.get("digits/5").expect("found").samples()[0], 5);
    assert!(Arc::ptr_eq(
        &intro,
        &library.get("vm-intro").expect("cached")
    ));

    // A changed file is read again only after the cache is cleared.
    write_wav(&custom, "vm-intro.wav", &[3; 80]);
    assert_eq!(library.get("vm-intro").expect("cached").samples()[0], 1);
    library.clear_cache();
    assert_eq!(library.get("vm-intro").expect("reloaded").samples()[0], 3);

    let err = library.get("vm-nope").expect_err("absent");
    assert!(matches!(err, SoundError::NotFound { .. }));
    let text = err.to_string();
    assert!(
        text.contains("vm-nope") && text.contains(&stock.display().to_string()),
        "{text}"
    );
    let empty = SoundLibrary::new(vec![]);
    assert!(empty
        .get("x")
        .expect_err("no dirs")
        .to_string()
        .contains("no directory"));
}

#[test]
fn names_cannot_leave_the_directories() {
    let dir = TempDir::new().expect("tempdir");
    let inner = dir.path().join("sounds");
    write_wav(dir.path(), "secret.wav", &[9; 80]);
    write_wav(&inner, "ok.wav", &[1; 80]);
    let library = SoundLibrary::new(vec![inner]);
    assert!(library.get("ok").is_ok());
    let long = "a".repeat(300);
    for name in [
        "../secret",
        "..",
        "a/../../secret",
        "/etc/passwd",
        "",
        "a//b",
        "./ok",
        "ok/.",
        "a/",
        "a\\b",
        "ok\0",
        "vm intro",
        "digits/../../secret",
        &long,
    ] {
        let err = library.get(name).expect_err(name);
        assert!(matches!(err, SoundError::BadName { .. }), "{name:?}: {err}");
    }
}

#[test]
fn a_bad_file_in_the_library_names_its_path() {
    let dir = TempDir::new().expect("tempdir");
    write_with(
        dir.path(),
        "loud.wav",
        spec(1, 8000, 8, SampleFormat::Int),
        |_| {},
    );
    let library = SoundLibrary::new(vec![dir.path().to_path_buf()]);
    let err = library.get("loud").expect_err("8-bit");
    let path = dir.path().join("loud.wav");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: 8-bit samples, expected 8000 Hz mono 16-bit PCM",
            path.display()
        )
    );
}

/// The digit and letter prompts of the `asterisk-core-sounds-en-wav`
/// package (checked against the package's file list).
fn packaged(name: &str) -> bool {
    const WORDS: [&str; 6] = ["hundred", "thousand", "million", "billion", "star", "pound"];
    let Some(rest) = name.strip_prefix("digits/") else {
        return matches!(name, "letters/a" | "letters/b" | "letters/c" | "letters/d");
    };
    match rest.parse::<u32>() {
        Ok(n) => n <= 20 || (n <= 90 && n % 10 == 0),
        Err(_) => WORDS.contains(&rest),
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn saying_digits() {
    assert_eq!(
        say_digits("205"),
        names(&["digits/2", "digits/0", "digits/5"])
    );
    assert_eq!(
        say_digits("*#aD-9 "),
        names(&[
            "digits/star",
            "digits/pound",
            "letters/a",
            "letters/d",
            "digits/9"
        ])
    );
    assert!(say_digits("").is_empty());
    assert!(say_digits("0123456789*#ABCD").iter().all(|n| packaged(n)));
}

#[test]
fn saying_numbers() {
    let cases: [(u64, &[&str]); 12] = [
        (0, &["digits/0"]),
        (7, &["digits/7"]),
        (13, &["digits/13"]),
        (20, &["digits/20"]),
        (42, &["digits/40", "digits/2"]),
        (100, &["digits/1", "digits/hundred"]),
        (205, &["digits/2", "digits/hundred", "digits/5"]),
        (
            999,
            &["digits/9", "digits/hundred", "digits/90", "digits/9"],
        ),
        (1001, &["digits/1", "digits/thousand", "digits/1"]),
        (2_019, &["digits/2", "digits/thousand", "digits/19"]),
        (
            1_000_042,
            &["digits/1", "digits/million", "digits/40", "digits/2"],
        ),
        (
            3_000_000_115,
            &[
                "digits/3",
                "digits/billion",
                "digits/1",
                "digits/hundred",
                "digits/15",
            ],
        ),
    ];
    for (n, expected) in cases {
        assert_eq!(say_number(n), names(expected), "{n}");
    }
    let big = say_number(123_456_789_012);
    assert_eq!(
        big[..4],
        names(&["digits/1", "digits/hundred", "digits/20", "digits/3"])
    );
    for n in [0, 11, 57, 300, 12_345, 700_001, 90_000_000, u64::MAX] {
        assert!(say_number(n).iter().all(|name| packaged(name)), "{n}");
    }
}

#[test]
fn a_call_plays_its_number_then_a_tone() {
    let dir = TempDir::new().expect("tempdir");
    let d = dir.path();
    write_wav(d, "you-are-number.wav", &[11; 400]);
    for name in ["digits/40", "digits/2"] {
        write_wav(d, &format!("{name}.wav"), &[22; 240]);
    }
    let library = SoundLibrary::new(vec![d.to_path_buf()]);
    let mut prompts = names(&["you-are-number"]);
    prompts.extend(say_number(42));
    let mut playlist = Playlist::from_names(&library, &prompts).expect("all there");
    playlist.extend(Playlist::new().then_tone(ToneProfile::japan().beep, 500));
    let samples: Vec<i16> = Player::new(playlist).flatten().collect();
    assert_eq!(samples.len(), (400 + 480 + 4000_usize).div_ceil(160) * 160);
    assert_eq!(samples[399], 11);
    assert_eq!(samples[400..880], [22; 480]);
    assert!(samples[900..4800].iter().any(|&v| v != 0), "the beep");
    let missing = Playlist::from_names(&library, &["digits/7"]);
    assert!(matches!(missing, Err(SoundError::NotFound { .. })));
}
