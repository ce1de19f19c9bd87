//! The CUDA launch plan of the fused RG-LRU: the f32 scan's plan (`kernels/cuda/linear_scan.cu`)
//! with its load and store passes swapped for the RG-LRU's; the carry pass is the scan's own.
use crate::error::Result;
use crate::linear_scan::plan::{plan as scan_plan, LinearScanPlan};
use crate::linear_scan::{ScanDtype, ScanShape};

pub fn plan(shape: ScanShape) -> Result<LinearScanPlan> {
    let mut p = scan_plan(shape, ScanDtype::F32)?;
    for launch in &mut p.launches {
        launch.kernel = match launch.kernel {
            "linear_scan_chunk_summary_f32" => "rg_lru_chunk_summary_f32",
            "linear_scan_chunk_apply_f32" => "rg_lru_chunk_apply_f32",
            other => other,
        };
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_rg_lru_runs_its_own_load_passes_and_the_scans_carry() {
        let short = plan(ScanShape::new(2, 100, 70).unwrap()).unwrap();
        let names: Vec<_> = short.launches.iter().map(|l| l.kernel).collect();
        assert_eq!(names, ["rg_lru_chunk_apply_f32"]);
        let long = plan(ScanShape::new(1, 1000, 70).unwrap()).unwrap();
        let names: Vec<_> = long.launches.iter().map(|l| l.kernel).collect();
        assert_eq!(
            names,
            [
                "rg_lru_chunk_summary_f32",
                "linear_scan_chunk_carry",
                "rg_lru_chunk_apply_f32"
            ]
        );
    }
}
