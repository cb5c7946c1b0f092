//! The vendor-neutral layout every parser produces: typed, page-normalized boxes with
//! confidences, plus what the document says about its extractor. Normalization, clamping and
//! the bookkeeping behind the warnings live here so every vendor follows the same rules.

use preflight_engine::ElementType;

use crate::error::AdapterError;
use crate::format::Format;

/// Pages beyond this are refused: the engine accepts at most 5,000 pages, and per-page work
/// must stay bounded whatever page number a malformed input claims.
pub(crate) const MAX_PAGES: usize = 5_000;

/// An axis-aligned rectangle `[x0, x1] × [y0, y1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    /// The bounding rectangle of some points; `None` without points or with a non-finite one.
    pub(crate) fn from_points(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Rect> {
        let mut r: Option<Rect> = None;
        for (x, y) in points {
            if !(x.is_finite() && y.is_finite()) {
                return None;
            }
            r = Some(match r {
                None => Rect {
                    x0: x,
                    y0: y,
                    x1: x,
                    y1: y,
                },
                Some(r) => Rect {
                    x0: r.x0.min(x),
                    y0: r.y0.min(y),
                    x1: r.x1.max(x),
                    y1: r.y1.max(y),
                },
            });
        }
        r
    }

    /// From a left/top/width/height box.
    pub(crate) fn from_ltwh(left: f64, top: f64, width: f64, height: f64) -> Option<Rect> {
        let r = Rect {
            x0: left,
            y0: top,
            x1: left + width,
            y1: top + height,
        };
        (r.is_finite() && width >= 0.0 && height >= 0.0).then_some(r)
    }

    pub(crate) fn union(self, o: Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }

    pub(crate) fn width(&self) -> f64 {
        self.x1 - self.x0
    }

    pub(crate) fn height(&self) -> f64 {
        self.y1 - self.y0
    }

    fn is_finite(&self) -> bool {
        self.x0.is_finite() && self.y0.is_finite() && self.x1.is_finite() && self.y1.is_finite()
    }

    fn scaled(self, w: f64, h: f64) -> Rect {
        Rect {
            x0: self.x0 / w,
            y0: self.y0 / h,
            x1: self.x1 / w,
            y1: self.y1 / h,
        }
    }
}

/// One emitted layout element, normalized to its page (0..1).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Element {
    pub page: usize,
    pub kind: ElementType,
    pub rect: Rect,
    /// 0..1; `None` when the vendor reports none for this element.
    pub confidence: Option<f64>,
}

/// A running mean.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    pub(crate) fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.sum += v;
            self.n += 1;
        }
    }

    pub(crate) fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// What a parser found, ready for [`crate::derive::finish`].
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub page_count: usize,
    pub elements: Vec<Element>,
    /// Mean word (token) confidence, 0..1, when the format reports word confidences.
    pub word_confidence: Option<f64>,
    pub vendor: String,
    pub model: String,
    pub version: String,
    pub latency_ms: f64,
    pub warnings: Vec<String>,
}

/// Collects elements in vendor order and counts every correction it makes.
#[derive(Debug)]
pub(crate) struct LayoutBuilder {
    format: Format,
    elements: Vec<Element>,
    pages_seen: usize,
    words: Mean,
    clamped: usize,
    max_excursion: f64,
    dropped_invalid: usize,
    dropped_degenerate: usize,
    dropped_no_page_size: usize,
    estimated_pages: usize,
    skipped_unknown: usize,
    pub vendor: String,
    pub model: String,
    pub version: String,
    pub latency_ms: f64,
}

/// Excursions below this are float noise (Textract polygons reach 1.0000001) and are
/// clamped silently; larger ones are counted in the warnings.
const SILENT_EXCURSION: f64 = 1e-6;

/// Normalizes a 0..1 or 0..100 confidence reported by a vendor into 0..1.
pub(crate) fn unit_confidence(v: f64, scale: f64) -> Option<f64> {
    let c = v / scale;
    c.is_finite().then(|| c.clamp(0.0, 1.0))
}

impl LayoutBuilder {
    pub(crate) fn new(format: Format, vendor: &str) -> Self {
        LayoutBuilder {
            format,
            elements: Vec::new(),
            pages_seen: 0,
            words: Mean::default(),
            clamped: 0,
            max_excursion: 0.0,
            dropped_invalid: 0,
            dropped_degenerate: 0,
            dropped_no_page_size: 0,
            estimated_pages: 0,
            skipped_unknown: 0,
            vendor: vendor.to_string(),
            model: "unknown".to_string(),
            version: "unknown".to_string(),
            latency_ms: 0.0,
        }
    }

    /// Checks a 0-based page index against [`MAX_PAGES`] and records the page as seen.
    pub(crate) fn page(&mut self, index: usize) -> Result<usize, AdapterError> {
        if index >= MAX_PAGES {
            return Err(AdapterError::malformed(
                self.format,
                format!(
                    "page number {} is beyond the limit of {MAX_PAGES} pages",
                    index + 1
                ),
            ));
        }
        self.pages_seen = self.pages_seen.max(index + 1);
        Ok(index)
    }

    /// Declares the page count stated by the document (pages may have no elements).
    pub(crate) fn declare_pages(&mut self, count: usize) -> Result<(), AdapterError> {
        if count > 0 {
            self.page(count - 1)?;
        }
        Ok(())
    }

    pub(crate) fn word_confidence(&mut self, c: Option<f64>) {
        if let Some(c) = c {
            self.words.add(c);
        }
    }

    /// Adds an element whose rectangle is in page units of `w` × `h`.
    pub(crate) fn push_scaled(
        &mut self,
        page: usize,
        kind: ElementType,
        rect: Option<Rect>,
        size: Option<(f64, f64)>,
        confidence: Option<f64>,
    ) {
        match size {
            Some((w, h)) if w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite() => {
                self.push(page, kind, rect.map(|r| r.scaled(w, h)), confidence)
            }
            _ => self.dropped_no_page_size += 1,
        }
    }

    /// Adds an element whose rectangle is already normalized to its page.
    pub(crate) fn push(
        &mut self,
        page: usize,
        kind: ElementType,
        rect: Option<Rect>,
        confidence: Option<f64>,
    ) {
        let Some(r) = rect.filter(Rect::is_finite) else {
            self.dropped_invalid += 1;
            return;
        };
        let r = Rect {
            x0: r.x0.min(r.x1),
            y0: r.y0.min(r.y1),
            x1: r.x0.max(r.x1),
            y1: r.y0.max(r.y1),
        };
        let excursion = [-r.x0, -r.y0, r.x1 - 1.0, r.y1 - 1.0]
            .into_iter()
            .fold(0.0_f64, f64::max);
        if excursion > SILENT_EXCURSION {
            self.clamped += 1;
            self.max_excursion = self.max_excursion.max(excursion);
        }
        let c = Rect {
            x0: r.x0.clamp(0.0, 1.0),
            y0: r.y0.clamp(0.0, 1.0),
            x1: r.x1.clamp(0.0, 1.0),
            y1: r.y1.clamp(0.0, 1.0),
        };
        if c.width() <= 0.0 || c.height() <= 0.0 {
            self.dropped_degenerate += 1;
            return;
        }
        self.pages_seen = self.pages_seen.max(page + 1);
        self.elements.push(Element {
            page,
            kind,
            rect: c,
            confidence: confidence
                .filter(|c| c.is_finite())
                .map(|c| c.clamp(0.0, 1.0)),
        });
    }

    /// Counts a page whose size had to be estimated from its content.
    pub(crate) fn estimated_page(&mut self) {
        self.estimated_pages += 1;
    }

    /// Counts a vendor element of a type the adapter does not know.
    pub(crate) fn skipped_unknown(&mut self) {
        self.skipped_unknown += 1;
    }

    pub(crate) fn build(self) -> Layout {
        let mut warnings = Vec::new();
        if self.clamped > 0 {
            warnings.push(format!(
                "clamped {} boxes that extended outside the page (largest excursion {:.4} of the page size)",
                self.clamped, self.max_excursion
            ));
        }
        if self.dropped_invalid > 0 {
            warnings.push(format!(
                "dropped {} elements with missing or non-finite coordinates",
                self.dropped_invalid
            ));
        }
        if self.dropped_degenerate > 0 {
            warnings.push(format!(
                "dropped {} boxes with zero area inside the page",
                self.dropped_degenerate
            ));
        }
        if self.dropped_no_page_size > 0 {
            warnings.push(format!(
                "dropped {} elements on pages without a usable page size",
                self.dropped_no_page_size
            ));
        }
        if self.estimated_pages > 0 {
            warnings.push(format!(
                "page size unknown for {} pages: estimated from the content extent (see docs/features.md)",
                self.estimated_pages
            ));
        }
        if self.skipped_unknown > 0 {
            warnings.push(format!(
                "skipped {} elements of an unrecognized type",
                self.skipped_unknown
            ));
        }
        Layout {
            page_count: self.pages_seen,
            elements: self.elements,
            word_confidence: self.words.get(),
            vendor: self.vendor,
            model: self.model,
            version: self.version,
            latency_ms: self.latency_ms,
            warnings,
        }
    }
}

/// Estimates a page size for pixel coordinates without one: the content's right/bottom edge
/// plus a margin equal to its left/top margin (pages are usually laid out with symmetric
/// margins, and the coordinate origin is the real page corner, so positions stay true).
pub(crate) fn estimate_page_size(rects: impl IntoIterator<Item = Rect>) -> Option<(f64, f64)> {
    let mut ext: Option<Rect> = None;
    for r in rects {
        ext = Some(match ext {
            None => r,
            Some(e) => e.union(r),
        });
    }
    let e = ext?;
    let w = e.x1 + e.x0.max(0.0);
    let h = e.y1 + e.y0.max(0.0);
    (w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite()).then_some((w, h))
}
