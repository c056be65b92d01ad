//! The words the prompt-injection model reads, for its training script
//! (`scripts/train-injection-model.py`): each line of standard input is a JSON string; each
//! line of output is the JSON array of that text's words, folded as the gateway folds them.

use std::io::{BufRead, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let text: String = serde_json::from_str(&line?)?;
        let folded = warden::guard::normalize::Folded::new(&text);
        serde_json::to_writer(&mut out, &warden::guard::ngram::words(folded.text()))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
