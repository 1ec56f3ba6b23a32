//! The shell's backslash commands: what each one is, parsed from its line.

/// A backslash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    Quit,
    Help,
    /// `\timing [on|off]`: None toggles.
    Timing(Option<bool>),
    /// `\x [on|off|auto]`: None toggles on and off.
    Expanded(Option<super::render::Expanded>),
    Format(super::render::Format),
    Namespaces,
    /// `\dt [ns]`.
    Tables(Option<String>),
    /// `\d table` (`\d` alone lists tables).
    Describe(String),
    Users,
    Live,
    Include(String),
    Watch(String),
    Tail(String),
    ConnInfo,
}

/// The commands and what they do, as `\?` prints them.
pub const HELP: &str = "\
General
  \\q                 quit (also Ctrl-D, `quit`, `exit`)
  \\?                 this help
  \\conninfo          the server, user and namespace of this session
  \\i FILE            run the SQL and commands in FILE
Schema
  \\dn                namespaces
  \\dt [NS]           tables (of NS, default all)
  \\d TABLE           a table's columns, types, keys, type and options
  \\du                users (dba)
  \\live              live queries (dba)
Output
  \\timing [on|off]   show how long each statement took
  \\x [on|off|auto]   expanded rows (auto: when a row is wider than the terminal)
  \\format table|json|csv
Live
  \\watch SELECT …    the rows, then every change as it happens, until Ctrl-C
                     (SUBSCRIBE TO SELECT … does the same)
  \\tail NS.TABLE     follow the table's log tail, until Ctrl-C
SQL statements end with `;` and may span lines; USE ns sets the namespace for later ones.";

/// Every command's name, for completion.
pub const NAMES: &[&str] = &[
    "\\q",
    "\\?",
    "\\conninfo",
    "\\i",
    "\\dn",
    "\\dt",
    "\\d",
    "\\du",
    "\\live",
    "\\timing",
    "\\x",
    "\\format",
    "\\watch",
    "\\tail",
];

fn on_off(arg: &str) -> Result<Option<bool>, String> {
    match arg.to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "on" => Ok(Some(true)),
        "off" => Ok(Some(false)),
        other => Err(format!("expected on or off, not \"{other}\"")),
    }
}

/// Parses a line that starts with `\`.
pub fn parse(line: &str) -> Result<Meta, String> {
    let line = line.trim().trim_end_matches(';').trim_end();
    let (name, arg) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(n, a)| (n, a.trim()));
    let need = |what: &str| {
        if arg.is_empty() {
            Err(format!("{name} needs {what}"))
        } else {
            Ok(arg.to_owned())
        }
    };
    let none = |m: Meta| {
        if arg.is_empty() {
            Ok(m)
        } else {
            Err(format!("{name} takes no argument"))
        }
    };
    use super::render::{Expanded, Format};
    match name {
        "\\q" | "\\quit" => none(Meta::Quit),
        "\\?" | "\\h" | "\\help" => Ok(Meta::Help),
        "\\conninfo" => none(Meta::ConnInfo),
        "\\timing" => on_off(arg).map(Meta::Timing),
        "\\x" => match arg.to_ascii_lowercase().as_str() {
            "auto" => Ok(Meta::Expanded(Some(Expanded::Auto))),
            _ => on_off(arg)
                .map(|o| Meta::Expanded(o.map(|on| if on { Expanded::On } else { Expanded::Off }))),
        },
        "\\format" => match arg.to_ascii_lowercase().as_str() {
            "table" => Ok(Meta::Format(Format::Table)),
            "json" => Ok(Meta::Format(Format::Json)),
            "csv" => Ok(Meta::Format(Format::Csv)),
            _ => Err("\\format needs table, json or csv".into()),
        },
        "\\dn" => none(Meta::Namespaces),
        "\\dt" => Ok(Meta::Tables(Some(arg.to_owned()).filter(|a| !a.is_empty()))),
        "\\d" if arg.is_empty() => Ok(Meta::Tables(None)),
        "\\d" => Ok(Meta::Describe(arg.to_owned())),
        "\\du" => none(Meta::Users),
        "\\live" => none(Meta::Live),
        "\\i" => need("a file").map(Meta::Include),
        "\\watch" => need("a query: \\watch SELECT … FROM ns.table").map(Meta::Watch),
        "\\tail" => need("a table: \\tail ns.table").map(Meta::Tail),
        _ => Err(format!("invalid command {name}; \\? lists the commands")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::render::Expanded;
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        assert_eq!(parse("\\q"), Ok(Meta::Quit));
        assert_eq!(parse("  \\dt app ; "), Ok(Meta::Tables(Some("app".into()))));
        assert_eq!(parse("\\d"), Ok(Meta::Tables(None)));
        assert_eq!(
            parse("\\d app.todos"),
            Ok(Meta::Describe("app.todos".into()))
        );
        assert_eq!(parse("\\x auto"), Ok(Meta::Expanded(Some(Expanded::Auto))));
        assert_eq!(parse("\\x"), Ok(Meta::Expanded(None)));
        assert_eq!(parse("\\timing off"), Ok(Meta::Timing(Some(false))));
        assert_eq!(
            parse("\\watch SELECT * FROM app.t WHERE id > 1"),
            Ok(Meta::Watch("SELECT * FROM app.t WHERE id > 1".into()))
        );
        assert_eq!(
            parse("\\nope"),
            Err("invalid command \\nope; \\? lists the commands".into())
        );
        assert_eq!(parse("\\i"), Err("\\i needs a file".into()));
        assert_eq!(
            parse("\\timing maybe"),
            Err("expected on or off, not \"maybe\"".into())
        );
        assert_eq!(parse("\\dn x"), Err("\\dn takes no argument".into()));
        for name in NAMES {
            assert!(
                !matches!(parse(name), Err(e) if e.starts_with("invalid")),
                "{name}"
            );
        }
    }
}
