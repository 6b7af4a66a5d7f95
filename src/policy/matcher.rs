//! A segment trie over route patterns. A lookup walks the trie depth-first
//! trying literal, then `{param}`, then `**` children, so the first route
//! found is the most specific one; its cost depends on the path's depth, not
//! on the number of routes. Patterns that end in the same trie slot have the
//! same specificity, so overlapping methods there are rejected at build time.

use std::collections::HashMap;

use super::{Method, MethodSet, PatternSegment, Route};

#[derive(Default)]
pub(super) struct Matcher {
    root: Node,
}

#[derive(Default)]
struct Node {
    literals: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// Routes whose pattern ends here.
    end: Vec<Slot>,
    /// Routes whose pattern continues here with `**`.
    rest: Vec<Slot>,
}

struct Slot {
    methods: MethodSet,
    route: usize,
}

impl Matcher {
    /// Builds the trie; on a conflict returns the indexes of the two routes
    /// (earlier, later).
    pub(super) fn build(routes: &[Route]) -> Result<Matcher, (usize, usize)> {
        let mut matcher = Matcher::default();
        for (index, route) in routes.iter().enumerate() {
            let mut node = &mut matcher.root;
            let mut rest = false;
            for segment in route.path.segments() {
                match segment {
                    PatternSegment::Literal(l) => {
                        node = node.literals.entry(l.as_str().into()).or_default();
                    }
                    PatternSegment::Param(_) => {
                        node = node.param.get_or_insert_with(Default::default);
                    }
                    PatternSegment::Rest => rest = true,
                }
            }
            let slots = if rest { &mut node.rest } else { &mut node.end };
            if let Some(other) = slots
                .iter()
                .find(|s| !s.methods.intersection(route.methods).is_empty())
            {
                return Err((other.route, index));
            }
            slots.push(Slot {
                methods: route.methods,
                route: index,
            });
        }
        Ok(matcher)
    }

    pub(super) fn find(&self, path: &[&str], method: Method) -> Option<usize> {
        self.root.find(path, method)
    }
}

impl Node {
    fn find(&self, path: &[&str], method: Method) -> Option<usize> {
        let Some((first, tail)) = path.split_first() else {
            return pick(&self.end, method).or_else(|| pick(&self.rest, method));
        };
        if let Some(found) = self
            .literals
            .get(*first)
            .and_then(|child| child.find(tail, method))
        {
            return Some(found);
        }
        if !first.is_empty() {
            if let Some(found) = self
                .param
                .as_ref()
                .and_then(|child| child.find(tail, method))
            {
                return Some(found);
            }
        }
        pick(&self.rest, method)
    }
}

fn pick(slots: &[Slot], method: Method) -> Option<usize> {
    slots
        .iter()
        .find(|s| s.methods.contains(method))
        .map(|s| s.route)
}
