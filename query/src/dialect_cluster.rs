//! The `CLUSTER …` statements (API.md 3.13), parsed from the dialect's tokens.

use super::*;

/// One `CLUSTER …` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// `CLUSTER SNAPSHOT`: this node builds a snapshot of its state.
    Snapshot,
    /// `CLUSTER PURGE [--UPTO] n`: refused, raft purges after its snapshots on its own and
    /// only the log's retention setting deletes segments.
    Purge,
    /// `CLUSTER TRIGGER ELECTION`: this node campaigns now.
    TriggerElection,
    /// `CLUSTER TRANSFER LEADER <id>` (also `TRANSFER-LEADER`).
    TransferLeader(u64),
    /// `CLUSTER STEPDOWN`: the leader hands over to the most caught-up voter.
    Stepdown,
    /// `CLUSTER CLEAR`: drops old snapshots.
    Clear,
    /// `CLUSTER JOIN <id> [RPC] <addr> [API] <addr>`: adds a node, a learner first.
    Join { id: u64, addr: String },
    /// `CLUSTER REMOVE <id>` (FoldDB's): removes a node.
    Remove(u64),
    /// `CLUSTER REBALANCE`: spreads group leaders over the nodes.
    Rebalance,
}

/// The rest of a statement after `CLUSTER`.
pub(super) fn parse_cluster(c: &mut Cursor) -> Result<Statement, ParseError> {
    let Some(verb) = c.word() else {
        return Err(USAGE.into());
    };
    let command = match verb.as_str() {
        "snapshot" => ClusterCommand::Snapshot,
        // `--UPTO n` reads as a comment: whatever follows PURGE, it is refused.
        "purge" => {
            while c.next().is_some() {}
            ClusterCommand::Purge
        }
        "trigger" => {
            c.expect("election")?;
            ClusterCommand::TriggerElection
        }
        "transfer" => {
            let _ = c.token(&Token::Minus);
            c.expect("leader")?;
            ClusterCommand::TransferLeader(node_id(c)?)
        }
        "stepdown" => ClusterCommand::Stepdown,
        "clear" => ClusterCommand::Clear,
        "rebalance" => ClusterCommand::Rebalance,
        "remove" | "leave" => ClusterCommand::Remove(node_id(c)?),
        "join" => parse_join(c)?,
        "list" | "status" | "ls" => {
            return Err(format!(
                "CLUSTER {} is a command of the CLI, not of the server: query system.cluster \
                 for the cluster's members",
                verb.to_ascii_uppercase()
            ));
        }
        _ => return Err(USAGE.into()),
    };
    c.end().map(|_| Statement::Cluster(command))
}

const USAGE: &str = "CLUSTER expects SNAPSHOT, PURGE, TRIGGER ELECTION, TRANSFER LEADER <node>, \
     STEPDOWN, CLEAR, JOIN <node> <address>, REMOVE <node> or REBALANCE";

fn node_id(c: &mut Cursor) -> Result<u64, ParseError> {
    let id = match c.next() {
        Some(Token::Number(n, _)) => n.parse::<u64>().ok(),
        Some(Token::SingleQuotedString(s)) => s.parse::<u64>().ok(),
        _ => None,
    };
    id.filter(|id| *id > 0)
        .ok_or_else(|| "CLUSTER expects a node id: a whole number from 1".to_owned())
}

/// `JOIN <id> [RPC] <addr> [API] <addr>`: a FoldDB node serves raft on its API address, so
/// one address is enough; given both, they must be the same.
fn parse_join(c: &mut Cursor) -> Result<ClusterCommand, ParseError> {
    let id = node_id(c)?;
    let mut addrs = Vec::new();
    while c.peek().is_some() {
        let _ = c.keyword("rpc") || c.keyword("api");
        addrs.push(address(&c.string("CLUSTER JOIN's address")?)?);
    }
    let addr = match addrs.as_slice() {
        [a] => a.clone(),
        [rpc, api] if rpc == api => api.clone(),
        [_, _] => {
            return Err(
                "CLUSTER JOIN: a FoldDB node serves raft RPC on its API address; give \
                 that one address (or the same one for RPC and API)"
                    .into(),
            );
        }
        _ => {
            return Err(
                "CLUSTER JOIN expects a node id and its address: CLUSTER JOIN 4 \
                 '127.0.0.1:8084'"
                    .into(),
            );
        }
    };
    Ok(ClusterCommand::Join { id, addr })
}

/// `host:port`, from `host:port` or `http://host:port[/]`.
fn address(text: &str) -> Result<String, ParseError> {
    let bare = text
        .strip_prefix("http://")
        .unwrap_or(text)
        .trim_end_matches('/');
    let port_ok = bare
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok || bare.contains('/') || bare.contains(char::is_whitespace) {
        return Err(format!(
            "CLUSTER JOIN: '{text}' is not a node address: expected host:port"
        ));
    }
    Ok(bare.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Result<Statement, ParseError> {
        classify(sql)
    }

    #[test]
    fn cluster_statements_parse() {
        let cmd = |sql: &str| match parse(sql) {
            Ok(Statement::Cluster(c)) => c,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(cmd("CLUSTER SNAPSHOT"), ClusterCommand::Snapshot);
        assert_eq!(
            cmd("cluster trigger election;"),
            ClusterCommand::TriggerElection
        );
        assert_eq!(
            cmd("CLUSTER TRANSFER LEADER 3"),
            ClusterCommand::TransferLeader(3)
        );
        assert_eq!(
            cmd("CLUSTER TRANSFER-LEADER 2"),
            ClusterCommand::TransferLeader(2)
        );
        assert_eq!(cmd("CLUSTER STEPDOWN"), ClusterCommand::Stepdown);
        assert_eq!(cmd("CLUSTER PURGE --UPTO 100"), ClusterCommand::Purge);
        assert_eq!(cmd("CLUSTER PURGE 100"), ClusterCommand::Purge);
        assert_eq!(cmd("CLUSTER REMOVE 4"), ClusterCommand::Remove(4));
        let join = ClusterCommand::Join {
            id: 4,
            addr: "127.0.0.1:8084".into(),
        };
        assert_eq!(cmd("CLUSTER JOIN 4 '127.0.0.1:8084'"), join);
        assert_eq!(cmd("CLUSTER JOIN 4 API 'http://127.0.0.1:8084/'"), join);
        assert_eq!(
            cmd("CLUSTER JOIN 4 RPC '127.0.0.1:8084' API '127.0.0.1:8084'"),
            join
        );
    }

    #[test]
    fn bad_cluster_statements_say_why() {
        for (sql, says) in [
            ("CLUSTER", "CLUSTER expects"),
            ("CLUSTER DANCE", "CLUSTER expects"),
            ("CLUSTER LIST", "system.cluster"),
            ("CLUSTER TRANSFER LEADER", "node id"),
            ("CLUSTER TRANSFER LEADER 0", "node id"),
            ("CLUSTER TRANSFER LEADER -1", "node id"),
            ("CLUSTER JOIN 4", "expects a node id and its address"),
            ("CLUSTER JOIN 4 'nohost'", "not a node address"),
            ("CLUSTER JOIN 4 '127.0.0.1:99999'", "not a node address"),
            ("CLUSTER JOIN 4 RPC 'a:1' API 'b:2'", "one address"),
            ("CLUSTER SNAPSHOT NOW", "SQL parse error"),
        ] {
            let err = parse(sql).expect_err(sql);
            assert!(err.contains(says), "{sql}: {err}");
        }
    }
}
