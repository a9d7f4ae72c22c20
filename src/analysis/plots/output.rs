//! Writing a figure: PNG, SVG and a one-page PDF.

use super::*;

/// Writes `<dir>/<stem>.png`, `<dir>/<stem>.svg` and `<dir>/<stem>.pdf`
/// (each atomically) and returns the paths. The PDF holds the PNG's pixels
/// (a raster page at 144 dpi); the SVG is the vector form.
pub fn save<F: Figure>(fig: &F, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    fonts();
    let (w, h) = fig.size();
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    let png = dir.join(format!("{stem}.png"));
    let tmp = dir.join(format!(".tmp-{}-{stem}.png", std::process::id()));
    image::save_buffer_with_format(
        &tmp,
        &rgb,
        w,
        h,
        image::ColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &png)?;
    let pdf = dir.join(format!("{stem}.pdf"));
    crate::store::atomic::write_bytes(&pdf, &pdf_page(&rgb, w, h)?)?;
    let svg = dir.join(format!("{stem}.svg"));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    crate::store::seal::write_sealed(&svg, &text, crate::store::seal::Comment::Markup)?;
    Ok(vec![png, svg, pdf])
}

/// A one-page PDF showing an RGB image (8 bits per channel, rows top to
/// bottom) at 144 dpi, its pixels deflate-compressed.
pub fn pdf_page(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(rgb)?;
    let pixels = z.finish()?;
    let (pw, ph) = (w as f64 / 2.0, h as f64 / 2.0);
    let content = format!("q {pw} 0 0 {ph} 0 0 cm /Im0 Do Q\n");
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let objects: Vec<(String, Option<&[u8]>)> = vec![
        ("<< /Type /Catalog /Pages 2 0 R >>".into(), None),
        ("<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(), None),
        (
            format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw} {ph}] /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>"),
            None,
        ),
        (
            format!("<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode /Length {} >>", pixels.len()),
            Some(&pixels),
        ),
        (
            format!("<< /Length {} >>", content.len()),
            Some(content.as_bytes()),
        ),
    ];
    for (i, (dict, stream)) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{dict}\n", i + 1).as_bytes());
        if let Some(data) = stream {
            out.extend_from_slice(b"stream\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\nendstream\n");
        }
        out.extend_from_slice(b"endobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    Ok(out)
}
