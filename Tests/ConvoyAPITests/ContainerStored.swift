import ConvoyModel

extension Container {
    /// The container as stored: without `stateAge`, which each read measures anew (two reads of
    /// an unchanged container differ in it).
    var stored: Container {
        var container = self
        container.stateAge = nil
        return container
    }
}
