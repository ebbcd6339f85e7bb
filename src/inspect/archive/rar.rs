use super::{Opened, Sink};
use crate::inspect::file::Budget;
pub fn open_rar4(_data: &[u8], _budget: &mut Budget, _sink: &mut Sink<'_>) -> Opened {
    Opened::default()
}
pub fn open_rar5(_data: &[u8], _budget: &mut Budget, _sink: &mut Sink<'_>) -> Opened {
    Opened::default()
}
