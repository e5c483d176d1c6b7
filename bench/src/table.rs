//! Text tables whose columns stay aligned whatever the figures: every column is as wide as
//! its widest cell, the first left-aligned, the others right-aligned.

/// Rows of cells under a header.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra cells are dropped).
    pub(crate) fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in w.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        w
    }

    fn line(cells: &[String], widths: &[usize], sep: &str) -> String {
        let cells: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        cells.join(sep)
    }

    /// The table as plain text: columns two spaces apart, trailing spaces trimmed.
    pub(crate) fn lines(&self) -> Vec<String> {
        let widths = self.widths();
        core::iter::once(&self.header)
            .chain(&self.rows)
            .map(|r| Self::line(r, &widths, "  ").trim_end().to_string())
            .collect()
    }

    /// The table as markdown, padded so that it is aligned as text too.
    pub(crate) fn markdown(&self) -> Vec<String> {
        // A rule needs three dashes to be one, whatever the column holds.
        let widths: Vec<usize> = self.widths().into_iter().map(|w| w.max(3)).collect();
        let mut out = vec![format!("| {} |", Self::line(&self.header, &widths, " | "))];
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                if i == 0 {
                    "-".repeat(w)
                } else {
                    format!("{}:", "-".repeat(w.saturating_sub(1)))
                }
            })
            .collect();
        out.push(format!("| {} |", rule.join(" | ")));
        for row in &self.rows {
            out.push(format!("| {} |", Self::line(row, &widths, " | ")));
        }
        out
    }
}

pub(crate) use swiotlb_bench::size_text;

/// `33.3` -> "33.3 ns", `1250.0` -> "1.25 µs", three significant figures or so.
pub(crate) fn time_text(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_figures() {
        let mut t = Table::new(&["impl", "pair", "speed-up"]);
        t.row(vec!["swiotlb".into(), time_text(33.3), String::new()]);
        t.row(vec![
            "linux_areas".into(),
            time_text(123_456_789.0),
            "12345.67x".into(),
        ]);
        t.row(vec!["x".into(), time_text(0.5)]);
        let lines = t.lines();
        assert_eq!(lines[0], "impl            pair   speed-up");
        assert_eq!(lines[1], "swiotlb      33.3 ns");
        assert_eq!(lines[2], "linux_areas   123 ms  12345.67x");
        assert_eq!(lines[3], "x            0.50 ns");
        let md = t.markdown();
        let width = md[0].chars().count();
        assert!(md.iter().all(|l| l.chars().count() == width), "{md:#?}");
        // Every column boundary is at the same place on every line.
        let bars = |l: &str| -> Vec<usize> {
            l.char_indices()
                .filter(|&(_, c)| c == '|')
                .map(|(i, _)| i)
                .collect()
        };
        assert!(md.iter().all(|l| bars(l) == bars(&md[0])), "{md:#?}");
        // An empty header cell still gets a rule of three dashes.
        let mut t = Table::new(&["", "x"]);
        t.row(vec![String::new(), "1".into()]);
        assert_eq!(t.markdown()[1], "| --- | --: |");
    }

    #[test]
    fn times_keep_three_figures_in_their_unit() {
        assert_eq!(time_text(33.34), "33.3 ns");
        assert_eq!(time_text(289.0), "289 ns");
        assert_eq!(time_text(1250.0), "1.25 µs");
        assert_eq!(time_text(61_500.0), "61.5 µs");
        assert_eq!(time_text(2.5e6), "2.50 ms");
    }
}
