//! A run's console output, kept up to a byte budget so a chatty workflow cannot fill memory.

/// The line that replaces everything past the budget.
const TRUNCATION_MARKER: &str = "… logs truncated\n";

pub(super) struct LogBuffer {
    text: String,
    budget_bytes: usize,
    truncated: bool,
}

impl LogBuffer {
    pub(super) fn new(budget_bytes: usize) -> Self {
        Self {
            text: String::new(),
            budget_bytes,
            truncated: false,
        }
    }

    /// Adds "[level] message" as one line. Returns false once the budget is spent: the part
    /// of the line that still fits is kept, then the marker, and later lines are dropped.
    pub(super) fn push(&mut self, level: &str, message: &str) -> bool {
        if self.truncated {
            return false;
        }
        let line_bytes = level.len() + message.len() + "[] \n".len();
        if self.text.len() + line_bytes <= self.budget_bytes {
            self.push_line(level, message);
            return true;
        }
        self.push_truncated_line(level, message);
        false
    }

    pub(super) fn into_text(self) -> String {
        self.text
    }

    fn push_line(&mut self, level: &str, message: &str) {
        self.text.push('[');
        self.text.push_str(level);
        self.text.push_str("] ");
        self.text.push_str(message);
        self.text.push('\n');
    }

    fn push_truncated_line(&mut self, level: &str, message: &str) {
        let room = self.budget_bytes.saturating_sub(self.text.len());
        let message_room = room.saturating_sub(level.len() + "[] \n".len());
        let kept = prefix_within(message, message_room);
        if !kept.is_empty() {
            self.push_line(level, kept);
        }
        self.text.push_str(TRUNCATION_MARKER);
        self.truncated = true;
    }
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
fn prefix_within(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_within_budget_are_kept_whole() {
        let mut logs = LogBuffer::new(100);
        assert!(logs.push("log", "hello"));
        assert!(logs.push("warn", "careful"));
        assert_eq!(logs.into_text(), "[log] hello\n[warn] careful\n");
    }

    #[test]
    fn overflow_keeps_what_fits_then_one_marker() {
        let mut logs = LogBuffer::new(21);
        assert!(logs.push("log", "first"));
        assert!(!logs.push("log", "é".repeat(20).as_str()));
        assert!(!logs.push("log", "dropped"));
        assert_eq!(logs.into_text(), "[log] first\n[log] é\n… logs truncated\n");
    }

    #[test]
    fn cut_lands_on_a_character_boundary() {
        let mut logs = LogBuffer::new(12);
        assert!(!logs.push("log", "ééééé"));
        assert_eq!(logs.into_text(), "[log] éé\n… logs truncated\n");
    }

    #[test]
    fn nothing_of_a_line_that_cannot_fit_a_character() {
        let mut logs = LogBuffer::new(7);
        assert!(!logs.push("log", "hello"));
        assert_eq!(logs.into_text(), "… logs truncated\n");
    }
}
