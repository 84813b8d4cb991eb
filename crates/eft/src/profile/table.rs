//! The sweep's tables: absolute (seconds and MiB per length), relative to `full` in the form of
//! LRA's Table 2 (steps per second and memory), and CSV.

use super::Measurement;

/// A row's name: the mechanism, and its parameters when they are not the defaults.
pub fn label(m: &Measurement) -> String {
    let params: Vec<String> = m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if params.is_empty() {
        m.mechanism.clone()
    } else {
        format!("{} {}", m.mechanism, params.join(" "))
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// Both Markdown tables; `what` names what one measurement is.
pub fn markdown(results: &[Measurement], what: &str) -> String {
    let mut lens: Vec<usize> = results.iter().map(|m| m.len).collect();
    lens.sort_unstable();
    lens.dedup();
    let mut names: Vec<String> = Vec::new();
    for r in results {
        if !names.contains(&label(r)) {
            names.push(label(r));
        }
    }
    let cell = |name: &str, len: usize| results.iter().find(|r| label(r) == name && r.len == len);
    let header = |s: &mut String, what: &str| {
        *s += &format!("| {what} |");
        for len in &lens {
            *s += &format!(" N={len} |");
        }
    };
    let mut s = format!(
        "{what}, default parameters unless the row names\n\
         them, f32 on the CPU.\n\
         Each cell: median seconds / peak RSS in MiB above the process baseline; the last column is the\n\
         peak-RSS ratio between the two longest measured lengths (the charts plot the heap peak).\n\n",
    );
    header(&mut s, "mechanism");
    s += " memory × per doubling |\n|---|";
    s += &"---|".repeat(lens.len() + 1);
    s += "\n";
    for name in &names {
        s += &format!("| {name} |");
        let mut measured: Vec<(usize, u64)> = Vec::new();
        for &len in &lens {
            match cell(name, len) {
                Some(Measurement {
                    seconds: Some(t),
                    peak_bytes: Some(b),
                    ..
                }) => {
                    s += &format!(" {t:.3} s / {:.0} MiB |", mib(*b));
                    measured.push((len, *b));
                }
                Some(m) => s += &format!(" {} |", m.note.as_deref().unwrap_or("—")),
                None => s += " — |",
            }
        }
        match measured.as_slice() {
            [.., (l1, b1), (l2, b2)] if *l2 == 2 * *l1 => {
                s += &format!(" {:.2} |\n", *b2 as f64 / *b1 as f64)
            }
            _ => s += " — |\n",
        }
    }

    // LRA's Table 2: speed (steps per second) and peak memory, both relative to `full`.
    s += "\nRelative to `full` at the same length (LRA Table 2 form): steps per second (higher is\n\
          faster) / peak memory (lower is smaller); — where either was not measured.\n\n";
    header(&mut s, "mechanism");
    s += "\n|---|";
    s += &"---|".repeat(lens.len());
    s += "\n";
    for name in &names {
        s += &format!("| {name} |");
        for &len in &lens {
            let pair = cell(name, len).zip(cell("full", len));
            match pair.and_then(|(m, f)| {
                let speed = m.steps_per_second()? / f.steps_per_second()?;
                let memory = m.peak_bytes? as f64 / f.peak_bytes?.max(1) as f64;
                Some((speed, memory))
            }) {
                Some((speed, memory)) => s += &format!(" {speed:.2}× / {memory:.2}× |"),
                None => s += " — |",
            }
        }
        s += "\n";
    }
    s
}

/// One line per configuration, measured or not.
pub fn csv(results: &[Measurement]) -> String {
    let mut s = String::from(
        "mechanism,params,batch,heads,len,head_dim,causal,seconds,steps_per_second,peak_bytes,heap_peak_bytes,flops,saved_bytes,note\n",
    );
    let opt = |x: Option<String>| x.unwrap_or_default();
    for m in results {
        let params: Vec<String> = m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            m.mechanism,
            quote(&params.join(" ")),
            m.batch,
            m.heads,
            m.len,
            m.head_dim,
            m.causal,
            opt(m.seconds.map(|x| x.to_string())),
            opt(m.steps_per_second().map(|x| x.to_string())),
            opt(m.peak_bytes.map(|x| x.to_string())),
            opt(m.heap_peak_bytes.map(|x| x.to_string())),
            m.flops,
            m.saved_bytes,
            quote(m.note.as_deref().unwrap_or("")),
        );
    }
    s
}

/// A CSV field, quoted when it holds a comma, quote or newline.
fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mechanism: &str, len: usize, seconds: Option<f64>, peak: Option<u64>) -> Measurement {
        Measurement {
            mechanism: mechanism.into(),
            params: vec![],
            batch: 1,
            heads: 4,
            len,
            head_dim: 64,
            causal: false,
            sets: vec![],
            seconds,
            seconds_range: None,
            peak_bytes: peak,
            heap_peak_bytes: None,
            flops: 1.0,
            saved_bytes: 2.0,
            note: seconds
                .is_none()
                .then(|| "out of memory: needs 9 GiB, x".to_string()),
            machine: None,
        }
    }

    #[test]
    fn tables_show_absolute_and_relative_figures() {
        let mib = 1u64 << 20;
        let rows = vec![
            m("full", 1024, Some(0.4), Some(100 * mib)),
            m("full", 2048, None, None),
            m("local", 1024, Some(0.1), Some(25 * mib)),
            m("local", 2048, Some(0.2), Some(50 * mib)),
        ];
        let md = markdown(
            &rows,
            "Forward+backward of one attention call, B=1, H=4, D=64",
        );
        assert!(
            md.contains("| local | 0.100 s / 25 MiB | 0.200 s / 50 MiB | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| full | 0.400 s / 100 MiB | out of memory"),
            "{md}"
        );
        // local is 4× as fast and uses a quarter of the memory at 1K; full has no 2K figure.
        assert!(md.contains("| local | 4.00× / 0.25× | — |"), "{md}");
        let csv = csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(
            lines[2].ends_with("\"out of memory: needs 9 GiB, x\""),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("local,,1,4,1024,64,false,0.1,10,26214400,"),
            "{}",
            lines[3]
        );
    }
}
