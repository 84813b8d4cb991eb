//! Pathfinder images as PNG files a person can look at.

use std::path::PathBuf;

use anyhow::anyhow;
use plotters::prelude::*;

use super::plot_err;

/// Draws `args.count` Pathfinder images and writes each as a PNG, enlarged to about 512 px.
pub fn pathfinder_pngs(args: &crate::args::PathfinderArgs) -> anyhow::Result<Vec<PathBuf>> {
    use eft_data::pathfinder::{GeometryOverrides, PathfinderConfig};
    let config = PathfinderConfig {
        size: args.size,
        contour_length: args.contour_length,
        train: 1,
        val: 1,
        test: 1,
        geometry: GeometryOverrides::default(),
    };
    config.validate()?;
    std::fs::create_dir_all(&args.png)
        .map_err(|e| anyhow!("cannot create {}: {e}", args.png.display()))?;
    let scale = (512 / args.size).max(1) as u32;
    let side = args.size as u32 * scale;
    let mut rng = eft_data::seeded_rng(args.seed, 0);
    let mut written = Vec::new();
    for i in 0..args.count {
        let connected = i % 2 == 0;
        let image = config.draw(&mut rng, connected)?;
        let path = args.png.join(format!(
            "pathfinder-{i}-{}.png",
            if connected { "connected" } else { "apart" }
        ));
        let root = BitMapBackend::new(&path, (side, side)).into_drawing_area();
        for (at, &g) in image.grey.iter().enumerate() {
            let (r, c) = (
                (at / args.size) as u32 * scale,
                (at % args.size) as u32 * scale,
            );
            let colour = RGBColor(g, g, g);
            for dy in 0..scale {
                for dx in 0..scale {
                    root.draw_pixel(((c + dx) as i32, (r + dy) as i32), &colour)
                        .map_err(plot_err)?;
                }
            }
        }
        root.present().map_err(plot_err)?;
        drop(root);
        written.push(path);
    }
    Ok(written)
}
