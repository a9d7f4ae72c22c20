//! The paper-style figure of an experiment.

use super::*;

/// The paper-style figure of an experiment: one heat map per group (sweep
/// value) on a shared frame and colour scale, then the loss and the Aiming
/// angle of every group with the spread over its seeds as bands.
pub struct Overview<'a> {
    pub title: String,
    pub panels: Vec<HeatPanel<'a>>,
    pub loss: BandChart,
    pub aiming: Option<BandChart>,
}

impl Overview<'_> {
    fn cols(&self) -> u32 {
        (self.panels.len() as u32).clamp(1, 3)
    }
    fn rows(&self) -> u32 {
        (self.panels.len() as u32).div_ceil(self.cols()).max(1)
    }
}

impl Figure for Overview<'_> {
    fn size(&self) -> (u32, u32) {
        let w = (self.cols() * 600).max(1200) + 110;
        (w, 50 + self.rows() * 560 + 430)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (w, _) = self.size();
        let root = root.titled(&self.title, (FONT, 22)).map_err(err)?;
        let (heat, bottom) = root.split_vertically(self.rows() * 560);
        let (maps, bar) = heat.split_horizontally(w - 110);
        let scale = SymLog::of_cells(self.panels.iter().flat_map(|p| p.cells.iter()));
        let cells = maps.split_evenly((self.rows() as usize, self.cols() as usize));
        for (p, area) in self.panels.iter().zip(cells.iter()) {
            p.draw(area, &scale, 14)?;
        }
        colour_bar(&bar, &scale, 60, 60)?;
        match &self.aiming {
            Some(a) => {
                let (l, r) = bottom.split_horizontally(w / 2);
                self.loss.draw(&l)?;
                a.draw(&r)?;
            }
            None => self.loss.draw(&bottom)?,
        }
        Ok(())
    }
}
