//! Tesseract TSV (`tesseract img out tsv`): 12 tab-separated columns `level page_num
//! block_num par_num line_num word_num left top width height conf text`, pixel coordinates,
//! level 1 = page (its box is the page size), 4 = line, 5 = word, `conf` −1 on non-words.

use std::collections::{BTreeMap, HashMap};

use preflight_engine::ElementType;

use crate::error::AdapterError;
use crate::format::Format;
use crate::layout::{estimate_page_size, Layout, LayoutBuilder, Mean, Rect};
use crate::PageSize;

const FMT: Format = Format::TesseractTsv;

struct Line {
    page: usize,
    rect: Rect,
    /// The box came from the level-4 row. Tesseract's words may stick out of their line's
    /// box; the line box is kept as reported (as hOCR's `ocr_line` bbox is), and only a line
    /// without its own row is the union of its words.
    from_row: bool,
    conf: Mean,
    has_text: bool,
}

pub(crate) fn parse(s: &str, page_size: Option<PageSize>) -> Result<Layout, AdapterError> {
    let mut b = LayoutBuilder::new(FMT, "tesseract");
    b.model = "tesseract".into();
    let mut sizes: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    let mut lines: Vec<Line> = Vec::new();
    let mut index: HashMap<[i64; 4], usize> = HashMap::new();
    let mut rows = 0usize;

    for (n, raw) in s.lines().enumerate() {
        let row = raw.trim_end_matches('\r');
        if row.trim().is_empty() || (n == 0 && row.starts_with("level\t")) {
            continue;
        }
        let cols: Vec<&str> = row.splitn(12, '\t').collect();
        let bad = || {
            AdapterError::malformed(
                FMT,
                format!("line {}: not a 12-column Tesseract row", n + 1),
            )
        };
        if cols.len() < 11 {
            return Err(bad());
        }
        let mut ints = [0i64; 10];
        for (slot, c) in ints.iter_mut().zip(&cols[..10]) {
            *slot = c.trim().parse::<i64>().map_err(|_| bad())?;
        }
        let conf: f64 = cols[10].trim().parse().map_err(|_| bad())?;
        let text_present = cols.get(11).is_some_and(|t| !t.trim().is_empty());
        let [level, page_num, block, par, line, _word, left, top, width, height] = ints;
        if !(1..=5).contains(&level) || width < 0 || height < 0 {
            return Err(bad());
        }
        rows += 1;
        let page = b.page(usize::try_from(page_num.max(1) - 1).map_err(|_| bad())?)?;
        let rect = Rect::from_ltwh(left as f64, top as f64, width as f64, height as f64)
            .ok_or_else(bad)?;
        match level {
            1 => {
                sizes.insert(page, (width as f64, height as f64));
            }
            4 | 5 => {
                let key = [page as i64, block, par, line];
                let i = *index.entry(key).or_insert_with(|| {
                    lines.push(Line {
                        page,
                        rect,
                        from_row: level == 4,
                        conf: Mean::default(),
                        has_text: false,
                    });
                    lines.len() - 1
                });
                if level == 5 && text_present {
                    let l = &mut lines[i];
                    l.has_text = true;
                    if !l.from_row {
                        l.rect = l.rect.union(rect);
                    }
                    if conf >= 0.0 {
                        let c = (conf / 100.0).clamp(0.0, 1.0);
                        l.conf.add(c);
                        b.word_confidence(Some(c));
                    }
                }
            }
            _ => {}
        }
    }
    if rows == 0 {
        return Err(AdapterError::malformed(FMT, "no data rows"));
    }
    // Rows of empty lines are how Tesseract reports non-text blocks (rules, pictures):
    // only lines holding at least one word with text are layout text.
    let mut by_page: BTreeMap<usize, Vec<&Line>> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.has_text) {
        by_page.entry(l.page).or_default().push(l);
    }
    for (page, ls) in by_page {
        let size = match sizes.get(&page) {
            Some(s) => Some(*s),
            None => match page_size {
                Some(p) => Some((p.width, p.height)),
                None => {
                    b.estimated_page();
                    estimate_page_size(ls.iter().map(|l| l.rect))
                }
            },
        };
        for l in ls {
            b.push_scaled(page, ElementType::Text, Some(l.rect), size, l.conf.get());
        }
    }
    for &page in sizes.keys() {
        b.page(page)?;
    }
    Ok(b.build())
}
