//! `eft data fetch`, also run by the arena before its cells train.

use crate::attn::BadInput;

/// Fetches the packages `tasks` need (all known packages when `tasks` is empty).
pub fn fetch_data(tasks: &[String]) -> anyhow::Result<()> {
    let dir = eft_data::fetch::data_dir();
    let names = eft_data::TaskConfig::NAMES;
    if let Some(unknown) = tasks.iter().find(|t| !names.contains(&t.as_str())) {
        return Err(BadInput(format!(
            "eft data fetch {unknown}: no such task; the tasks are {}",
            names.join(", ")
        ))
        .into());
    }
    let mut packages: Vec<&eft_data::fetch::Package> = if tasks.is_empty() {
        eft_data::fetch::PACKAGES.iter().collect()
    } else {
        tasks
            .iter()
            .flat_map(|t| eft_data::fetch::packages_for(t))
            .collect()
    };
    // Tasks that share a package (text and lm) fetch it once.
    packages.sort_by_key(|p| p.spec);
    packages.dedup_by_key(|p| p.spec);
    for t in tasks {
        if eft_data::fetch::packages_for(t).is_empty() {
            eprintln!("{t}: generated on the fly, nothing to fetch");
        }
    }
    for p in packages {
        let tasks = p.tasks.join(", ");
        eprintln!("fetching {} for {tasks} into {}…", p.spec, dir.display());
        let at = eft_data::fetch::fetch(p, &dir)?;
        eprintln!("  verified and unpacked: {}", at.display());
    }
    Ok(())
}
