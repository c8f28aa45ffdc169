//! `cachectl completions` and `cachectl man`: generated from the clap definitions, so they can
//! never disagree with the real flags.

use crate::cli::Cli;
use anyhow::Result;
use clap::CommandFactory;

pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "cachectl", &mut std::io::stdout());
    Ok(0)
}

/// The man page: the top-level page, then one page per subcommand (`man -l -` shows them in
/// turn).
pub fn man() -> Result<i32> {
    let cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // A one-shot process: leaking the page title is simpler than owning it.
        let title: &'static str =
            Box::leak(format!("cachectl-{}", sub.get_name()).into_boxed_str());
        clap_mangen::Man::new(sub.clone().name(title)).render(&mut out)?;
    }
    Ok(0)
}
