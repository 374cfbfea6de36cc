@_exported import ConvoyDispatchCore
