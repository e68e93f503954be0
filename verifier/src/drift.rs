//! (being written)
#[cfg(test)]
mod tests {
    #[test]
    fn z3_links() {
        let s = z3::Solver::new();
        let x = z3::ast::Real::new_const("x");
        s.assert(&x.gt(&z3::ast::Real::from_rational(1, 2)));
        assert_eq!(s.check(), z3::SatResult::Sat);
    }
}
