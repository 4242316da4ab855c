//! `--mix hot=88,switch=10,pin=2`: relative weights of the kinds of work a
//! run does. Weights need not add up to anything; each mode says which
//! names it knows, so a typo is an error rather than a silently different
//! load.

use rand::Rng;

/// Named weights, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(Vec<(String, f64)>);

impl Mix {
    /// Parse `name=weight,…`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut items: Vec<(String, f64)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) =
                part.split_once('=').ok_or_else(|| format!("{part:?}: write each part as name=weight, e.g. hot=90"))?;
            let name = name.trim().to_string();
            let weight: f64 =
                weight.trim().parse().map_err(|_| format!("{part:?}: the weight must be a number, e.g. hot=90"))?;
            if !weight.is_finite() || weight < 0.0 {
                return Err(format!("{part:?}: weights must be zero or more"));
            }
            if items.iter().any(|(n, _)| *n == name) {
                return Err(format!("{name:?} appears twice in the mix"));
            }
            items.push((name, weight));
        }
        if items.iter().all(|(_, w)| *w == 0.0) {
            return Err("the mix needs at least one weight above zero".into());
        }
        Ok(Self(items))
    }

    /// Check every name is one of `known`; a missing name weighs zero.
    pub fn weights(&self, known: &[&str]) -> Result<Vec<f64>, String> {
        for (name, _) in &self.0 {
            if !known.contains(&name.as_str()) {
                return Err(format!("unknown kind {name:?} in --mix: this mode knows {}", known.join(", ")));
            }
        }
        Ok(known.iter().map(|k| self.0.iter().find(|(n, _)| n == k).map_or(0.0, |(_, w)| *w)).collect())
    }
}

/// Pick an index with probability proportional to its weight (at least
/// one weight must be above zero).
pub fn pick(weights: &[f64], rng: &mut impl Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn parses_and_checks_names() {
        let mix = Mix::parse("hot=88, switch=10,pin=2").unwrap();
        assert_eq!(mix.weights(&["hot", "pin", "switch"]).unwrap(), vec![88.0, 2.0, 10.0]);
        assert_eq!(Mix::parse("hot=1").unwrap().weights(&["hot", "pin"]).unwrap(), vec![1.0, 0.0]);
        assert!(mix.weights(&["hot", "pin"]).unwrap_err().contains("switch"));
        assert!(Mix::parse("hot").is_err());
        assert!(Mix::parse("hot=x").is_err());
        assert!(Mix::parse("hot=-1").is_err());
        assert!(Mix::parse("hot=0").is_err());
        assert!(Mix::parse("hot=1,hot=2").is_err());
    }

    #[test]
    fn picks_in_proportion() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0usize; 3];
        for _ in 0..100_000 {
            counts[pick(&[70.0, 0.0, 30.0], &mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((69_000..71_000).contains(&counts[0]), "{counts:?}");
    }
}
