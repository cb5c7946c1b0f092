//! hOCR (Tesseract, OCRopus, ...): HTML whose elements carry hOCR classes and `title`
//! properties (`bbox x0 y0 x1 y1`, `x_wconf`). Real hOCR is often HTML rather than XML
//! (unclosed `<meta>`, `<br>`, stray end tags), so it is read with quick-xml in its most
//! lenient mode and an element stack that tolerates missing and unmatched end tags.

use preflight_engine::ElementType;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::AdapterError;
use crate::format::Format;
use crate::layout::{estimate_page_size, Layout, LayoutBuilder, Mean, Rect};
use crate::PageSize;

const FMT: Format = Format::Hocr;

/// HTML elements that never have an end tag, so they must not be pushed on the stack.
const VOID: [&str; 14] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Page,
    /// Index into `lines`.
    Line(usize),
    /// Word confidence (0..1) and whether the word had text.
    Word(Option<f64>, bool),
    Other,
}

struct Frame {
    name: String,
    role: Role,
}

struct Line {
    page: usize,
    rect: Rect,
    conf: Mean,
    has_text: bool,
}

struct Page {
    size: Option<(f64, f64)>,
}

/// The `title` properties we use: `bbox` and `x_wconf`.
fn title_props(title: &str) -> (Option<Rect>, Option<f64>) {
    let mut bbox = None;
    let mut wconf = None;
    for prop in title.split(';') {
        let mut it = prop.split_whitespace();
        match it.next() {
            Some("bbox") => {
                let n: Vec<f64> = it.filter_map(|t| t.parse().ok()).collect();
                if n.len() == 4 {
                    bbox = Rect::from_points([(n[0], n[1]), (n[2], n[3])]);
                }
            }
            Some("x_wconf") => wconf = it.next().and_then(|t| t.parse::<f64>().ok()),
            _ => {}
        }
    }
    (bbox, wconf)
}

fn attrs(e: &BytesStart<'_>) -> (String, String) {
    let mut class = String::new();
    let mut title = String::new();
    for a in e.html_attributes().with_checks(false).flatten() {
        match a.key.as_ref().to_ascii_lowercase().as_str() {
            "class" => class = a.value.into_owned(),
            "title" => title = a.value.into_owned(),
            _ => {}
        }
    }
    (class, title)
}

pub(crate) fn parse(s: &str, page_size: Option<PageSize>) -> Result<Layout, AdapterError> {
    let mut reader = Reader::from_str(s);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = false;
        cfg.allow_unmatched_ends = true;
        cfg.allow_dangling_amp = true;
        cfg.check_comments = false;
    }
    let mut b = LayoutBuilder::new(FMT, "hocr");
    let mut stack: Vec<Frame> = Vec::new();
    let mut pages: Vec<Page> = Vec::new();
    let mut lines: Vec<Line> = Vec::new();
    let mut figures: Vec<(usize, Rect)> = Vec::new();
    let mut system: Option<String> = None;

    loop {
        let event = reader.read_event().map_err(|e| {
            AdapterError::malformed(
                FMT,
                format!("markup error near byte {}: {e}", reader.error_position()),
            )
        })?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let name = e.local_name().as_ref().to_ascii_lowercase();
                let (class, title) = attrs(e);
                if name == "meta" {
                    let mut is_system = false;
                    let mut content = None;
                    for a in e.html_attributes().with_checks(false).flatten() {
                        match a.key.as_ref().to_ascii_lowercase().as_str() {
                            "name" => is_system = a.value.trim() == "ocr-system",
                            "content" => content = Some(a.value.into_owned()),
                            _ => {}
                        }
                    }
                    if is_system {
                        system = content.map(|c| c.chars().take(128).collect());
                    }
                }
                let classes: Vec<&str> = class.split_whitespace().collect();
                let has = |c: &str| classes.contains(&c);
                let (bbox, wconf) = title_props(&title);
                let current_page = pages.len().saturating_sub(1);
                let role = if has("ocr_page") {
                    let size = bbox
                        .map(|r| (r.x1, r.y1))
                        .filter(|(w, h)| *w > 0.0 && *h > 0.0);
                    pages.push(Page { size });
                    Role::Page
                } else if has("ocr_line")
                    || has("ocr_header")
                    || has("ocr_caption")
                    || has("ocr_textfloat")
                {
                    match bbox {
                        Some(rect) => {
                            lines.push(Line {
                                page: current_page,
                                rect,
                                conf: Mean::default(),
                                has_text: false,
                            });
                            Role::Line(lines.len() - 1)
                        }
                        None => Role::Other,
                    }
                } else if has("ocrx_word") {
                    Role::Word(wconf.map(|c| (c / 100.0).clamp(0.0, 1.0)), false)
                } else if has("ocr_photo") || has("ocr_image") {
                    if let Some(r) = bbox {
                        figures.push((current_page, r));
                    }
                    Role::Other
                } else {
                    Role::Other
                };
                if role == Role::Page && pages.len() > crate::layout::MAX_PAGES {
                    return Err(AdapterError::malformed(FMT, "too many pages"));
                }
                if is_empty || VOID.contains(&name.as_str()) {
                    continue;
                }
                stack.push(Frame { name, role });
            }
            Event::End(ref e) => {
                let name = e.local_name().as_ref().to_ascii_lowercase();
                // Close up to the matching open element; ignore end tags that match nothing.
                if let Some(pos) = stack.iter().rposition(|f| f.name == name) {
                    while stack.len() > pos {
                        if let Some(f) = stack.pop() {
                            close(&mut b, &mut lines, &stack, f);
                        }
                    }
                }
            }
            Event::Text(ref t) if !t.trim().is_empty() => mark_text(&mut stack, &mut lines),
            Event::GeneralRef(_) | Event::CData(_) => mark_text(&mut stack, &mut lines),
            Event::Eof => break,
            _ => {}
        }
    }
    while let Some(f) = stack.pop() {
        close(&mut b, &mut lines, &stack, f);
    }
    if pages.is_empty() && lines.is_empty() {
        return Err(AdapterError::malformed(
            FMT,
            "no hOCR elements (ocr_page, ocr_line) found",
        ));
    }

    if let Some(sys) = system {
        let sys = sys.trim();
        // "tesseract 5.3.0", "ocropy-1.0": engine name, then its version.
        let split = sys.find(' ').or_else(|| sys.rfind('-'));
        match split {
            Some(i) => {
                b.vendor = sys[..i].trim().to_string();
                b.version = sys[i + 1..].trim().to_string();
            }
            None => b.vendor = sys.to_string(),
        }
        if b.vendor.is_empty() {
            b.vendor = "hocr".into();
        }
        if b.version.is_empty() {
            b.version = "unknown".into();
        }
        b.model = b.vendor.clone();
    }

    let page_count = pages.len().max(1);
    b.declare_pages(page_count)?;
    for p in 0..page_count {
        let page_lines: Vec<&Line> = lines.iter().filter(|l| l.page == p && l.has_text).collect();
        let page_figs: Vec<Rect> = figures.iter().filter(|f| f.0 == p).map(|f| f.1).collect();
        if page_lines.is_empty() && page_figs.is_empty() {
            continue;
        }
        let size = match pages.get(p).and_then(|pg| pg.size) {
            Some(s) => Some(s),
            None => match page_size {
                Some(ps) => Some((ps.width, ps.height)),
                None => {
                    b.estimated_page();
                    estimate_page_size(
                        page_lines
                            .iter()
                            .map(|l| l.rect)
                            .chain(page_figs.iter().copied()),
                    )
                }
            },
        };
        // Lines first, then figures: Tesseract places picture blocks anywhere in its block
        // order, and a fixed order keeps reading_order comparable between documents.
        for l in &page_lines {
            b.push_scaled(p, ElementType::Text, Some(l.rect), size, l.conf.get());
        }
        for r in page_figs {
            b.push_scaled(p, ElementType::Figure, Some(r), size, None);
        }
    }
    Ok(b.build())
}

/// Text inside a word (or directly inside a line, as OCRopus writes it) makes the enclosing
/// line real, and the innermost word a word with text.
fn mark_text(stack: &mut [Frame], lines: &mut [Line]) {
    let mut word_seen = false;
    for f in stack.iter_mut().rev() {
        match &mut f.role {
            Role::Word(_, has) if !word_seen => {
                *has = true;
                word_seen = true;
            }
            Role::Line(i) => {
                if let Some(l) = lines.get_mut(*i) {
                    l.has_text = true;
                }
                return;
            }
            _ => {}
        }
    }
}

/// A closing word with text contributes its confidence to its line and the document.
fn close(b: &mut LayoutBuilder, lines: &mut [Line], stack: &[Frame], f: Frame) {
    if let Role::Word(Some(c), true) = f.role {
        b.word_confidence(Some(c));
        let line = stack.iter().rev().find_map(|f| match f.role {
            Role::Line(i) => Some(i),
            _ => None,
        });
        if let Some(l) = line.and_then(|i| lines.get_mut(i)) {
            l.conf.add(c);
        }
    }
}
